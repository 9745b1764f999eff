import { DirectoryUnavailableError } from '../directory/conversation-directory';
import { ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT, ER_NO_SUCH_TABLE } from '../database/mysql-errors';

/**
 * Is a routing failure a dependency outage (retry the batch, never quarantine) or something the
 * message may have caused (candidate for quarantine)? Only the first question is decided here, from
 * the error alone; the router also pings the dependencies before it believes a failure is the
 * message's fault. When in doubt an error counts as an outage: a stuck partition is visible and
 * recovers, a wrongly quarantined message is lost to its recipients.
 */

/** Socket, DNS, pool and protocol-level codes (Node, mysql2, undici): the connection, not the data. */
const OUTAGE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR',
  'PROTOCOL_ENQUEUE_AFTER_QUIT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/**
 * MySQL/MariaDB server errors about the server's state, load or configuration rather than the row:
 * locks, connection limits, shutdown/kill, read-only, full disk, missing schema, access rights.
 */
const OUTAGE_ERRNOS = new Set([
  ER_LOCK_WAIT_TIMEOUT,
  ER_LOCK_DEADLOCK,
  ER_NO_SUCH_TABLE,
  1015, // ER_CANT_LOCK
  1021, // ER_DISK_FULL
  1037, // ER_OUTOFMEMORY
  1040, // ER_CON_COUNT_ERROR
  1041, // ER_OUT_OF_RESOURCES
  1044, // ER_DBACCESS_DENIED_ERROR
  1045, // ER_ACCESS_DENIED_ERROR
  1049, // ER_BAD_DB_ERROR
  1053, // ER_SERVER_SHUTDOWN
  1054, // ER_BAD_FIELD_ERROR (schema behind the code: run the migrations)
  1114, // ER_RECORD_FILE_FULL
  1129, // ER_HOST_IS_BLOCKED
  1130, // ER_HOST_NOT_PRIVILEGED
  1135, // ER_CANT_CREATE_THREAD
  1142, // ER_TABLEACCESS_DENIED_ERROR
  1152, // ER_ABORTING_CONNECTION
  1158, // ER_NET_READ_ERROR
  1159, // ER_NET_READ_INTERRUPTED
  1160, // ER_NET_ERROR_ON_WRITE
  1161, // ER_NET_WRITE_INTERRUPTED
  1184, // ER_NEW_ABORTING_CONNECTION
  1203, // ER_TOO_MANY_USER_CONNECTIONS
  1206, // ER_LOCK_TABLE_FULL
  1226, // ER_USER_LIMIT_REACHED
  1290, // ER_OPTION_PREVENTS_STATEMENT (--read-only)
  1317, // ER_QUERY_INTERRUPTED
  1412, // ER_TABLE_DEF_CHANGED
  1637, // ER_TOO_MANY_CONCURRENT_TRXS
  1836, // ER_READ_ONLY_MODE
  1927, // ER_CONNECTION_KILLED (MariaDB)
  1969, // ER_STATEMENT_TIMEOUT (MariaDB)
  3024, // ER_QUERY_TIMEOUT (MySQL)
]);

/** Error class names of timeouts and connection failures (fetch/AbortSignal, ioredis, kafkajs). */
const OUTAGE_NAMES = new Set([
  'TimeoutError',
  'AbortError',
  'MaxRetriesPerRequestError',
  'ClusterAllFailedError',
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSNumberOfRetriesExceeded',
  'KafkaJSBrokerNotFound',
]);

/** Messages of driver errors that carry no code (ioredis, mysql2 pool, TypeORM). */
const OUTAGE_MESSAGES =
  /^(Connection is closed\.|Stream isn't writeable|Pool is closed\.|No connections available\.|Queue limit reached\.|Driver not Connected|Connection lost)/;

interface ErrorLike {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  errno?: unknown;
  fatal?: unknown;
  driverError?: unknown;
  cause?: unknown;
  errors?: unknown;
}

/** The error and what it wraps (TypeORM driverError, `cause`, AggregateError), breadth-first, bounded. */
function chain(err: unknown): ErrorLike[] {
  const out: ErrorLike[] = [];
  const queue: unknown[] = [err];
  while (queue.length > 0 && out.length < 16) {
    const e = queue.shift();
    if (typeof e !== 'object' || e === null || out.includes(e as ErrorLike)) continue;
    const x = e as ErrorLike;
    out.push(x);
    queue.push(x.driverError, x.cause);
    if (Array.isArray(x.errors)) queue.push(...x.errors.slice(0, 8));
  }
  return out;
}

/** True when the error says a dependency is unreachable, overloaded, locked or misconfigured. */
export function isOutageError(err: unknown): boolean {
  return chain(err).some(
    (e) =>
      e instanceof DirectoryUnavailableError ||
      e.fatal === true || // mysql2: the connection itself is gone
      (typeof e.code === 'string' && OUTAGE_CODES.has(e.code)) ||
      (typeof e.errno === 'number' && OUTAGE_ERRNOS.has(e.errno)) ||
      (typeof e.name === 'string' && OUTAGE_NAMES.has(e.name)) ||
      (typeof e.message === 'string' && OUTAGE_MESSAGES.test(e.message)),
  );
}

/** Where routing one message failed; the `reason` label of relay_dead_letters_total. */
export type PoisonStage = 'serialize' | 'directory' | 'outbox';

export const POISON_REASONS: Record<PoisonStage, string> = {
  serialize: 'unserializable',
  directory: 'directory_rejected',
  outbox: 'outbox_rejected',
};

/** An error raised while routing one message, tagged with the stage it came from. */
export class RoutingError extends Error {
  override readonly name = 'RoutingError';

  constructor(
    readonly stage: PoisonStage,
    readonly error: unknown,
  ) {
    super(`${POISON_REASONS[stage]}: ${describeError(error)}`, { cause: error });
  }
}

/** `Name: message`, bounded: dead letters and logs carry it, and a message can be huge. */
export function describeError(err: unknown, max = 500): string {
  const e = err as ErrorLike | null;
  const text =
    typeof e === 'object' && e !== null && typeof e.message === 'string'
      ? `${typeof e.name === 'string' ? e.name : 'Error'}: ${e.message}`
      : String(err);
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

/** The error a RoutingError wraps (what the driver threw); any other error as it is. */
export function rootError(err: unknown): unknown {
  return err instanceof RoutingError ? err.error : err;
}

/** The metric label for a message given up on: its stage, or `failed` when no stage is known. */
export function poisonReason(err: unknown): string {
  return err instanceof RoutingError ? POISON_REASONS[err.stage] : 'failed';
}
