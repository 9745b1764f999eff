import { setTimeout as sleep } from 'node:timers/promises';
import { DataSource, QueryRunner } from 'typeorm';
import { isRetryableTxError } from './mysql-errors';

type IsolationLevel = NonNullable<Parameters<QueryRunner['startTransaction']>[0]>;

export interface TxOptions {
  isolation?: IsolationLevel;
  /** Extra attempts after a deadlock or lock wait timeout (the whole callback runs again). */
  retries?: number;
}

/**
 * Runs `work` in one transaction on one pooled connection: commit when it resolves, rollback when
 * it throws. Deadlocks and lock wait timeouts roll back and run `work` again from the start, so
 * `work` must not keep state between attempts.
 */
export async function inTransaction<T>(
  ds: DataSource,
  work: (qr: QueryRunner) => Promise<T>,
  { isolation = 'READ COMMITTED', retries = 4 }: TxOptions = {},
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const qr = ds.createQueryRunner();
    try {
      await qr.connect();
      await qr.startTransaction(isolation);
      const result = await work(qr);
      await qr.commitTransaction();
      return result;
    } catch (err) {
      if (qr.isTransactionActive) await qr.rollbackTransaction().catch(() => undefined);
      if (attempt >= retries || !isRetryableTxError(err)) throw err;
    } finally {
      await qr.release().catch(() => undefined);
    }
    // Jittered backoff so the transactions that collided do not collide again in lockstep.
    await sleep(Math.floor(Math.random() * 10 * 2 ** attempt) + 1);
  }
}

/** `sql, sql, sql` (n times). */
export function repeat(sql: string, n: number): string {
  return new Array<string>(n).fill(sql).join(', ');
}

/** `(?, ?), (?, ?)` for `rows` tuples of `width` placeholders. */
export function tuples(rows: number, width: number): string {
  return repeat(`(${repeat('?', width)})`, rows);
}

/** `?, ?, ?` */
export function list(n: number): string {
  return repeat('?', n);
}

/** Splits `items` into runs of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
