/** MySQL/MariaDB error numbers the engine reacts to. */
export const ER_LOCK_WAIT_TIMEOUT = 1205;
export const ER_LOCK_DEADLOCK = 1213;
export const ER_NO_SUCH_TABLE = 1146;
export const ER_DUP_ENTRY = 1062;

interface DriverErrorLike {
  errno?: unknown;
  driverError?: { errno?: unknown };
}

/** The server error number of a mysql2 error, also when TypeORM wrapped it in a QueryFailedError. */
export function mysqlErrno(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as DriverErrorLike;
  const errno = e.errno ?? e.driverError?.errno;
  return typeof errno === 'number' ? errno : undefined;
}

/** Errors after which the whole transaction can simply run again (it was, or is, rolled back). */
export function isRetryableTxError(err: unknown): boolean {
  const errno = mysqlErrno(err);
  return errno === ER_LOCK_DEADLOCK || errno === ER_LOCK_WAIT_TIMEOUT;
}
