import { createHash } from 'node:crypto';
import { DataSource } from 'typeorm';
import { MIGRATIONS_TABLE } from './data-source';
import { ER_NO_SUCH_TABLE, mysqlErrno } from './mysql-errors';

export interface MigrationLockOptions {
  /** How long to wait for another process's migration run to finish. */
  lockTimeoutSec?: number;
}

export interface MigrationState {
  name: string;
  executed: boolean;
}

const DEFAULT_LOCK_TIMEOUT_SEC = 60;

/**
 * Runs every pending migration while holding the database's migration lock, so that several nodes
 * starting at once (each with MYSQL_MIGRATE_ON_START) and a CLI run never migrate side by side:
 * the first one migrates, the others wait for it and then find nothing left to do.
 * Returns the names of the migrations this call applied.
 */
export async function runMigrationsLocked(
  ds: DataSource,
  options: MigrationLockOptions = {},
): Promise<string[]> {
  return withMigrationLock(ds, options, async () => {
    const applied = await ds.runMigrations({ transaction: 'each' });
    return applied.map((m) => m.name);
  });
}

/** Reverts the most recently applied migration, under the lock; returns its name (null if none). */
export async function revertLastMigration(
  ds: DataSource,
  options: MigrationLockOptions = {},
): Promise<string | null> {
  return withMigrationLock(ds, options, async () => {
    const last = (await executedMigrations(ds)).at(-1) ?? null;
    if (last) await ds.undoLastMigration({ transaction: 'each' });
    return last;
  });
}

/** Every known migration, oldest first, and whether it has been applied to this database. */
export async function migrationStatus(ds: DataSource): Promise<MigrationState[]> {
  const executed = new Set(await executedMigrations(ds));
  return ds.migrations.map((m) => ({ name: m.name!, executed: executed.has(m.name!) }));
}

async function executedMigrations(ds: DataSource): Promise<string[]> {
  try {
    const rows: { name: string }[] = await ds.query(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY id`);
    return rows.map((r) => r.name);
  } catch (err) {
    if (mysqlErrno(err) === ER_NO_SUCH_TABLE) return [];
    throw err;
  }
}

/**
 * `GET_LOCK` is a server-wide named lock held by one connection: it is taken on a connection of its
 * own, kept for the whole run and released (also implicitly, should that connection die). The name
 * includes the database, so databases sharing a server do not wait for each other.
 */
async function withMigrationLock<T>(
  ds: DataSource,
  options: MigrationLockOptions,
  work: () => Promise<T>,
): Promise<T> {
  const timeoutSec = options.lockTimeoutSec ?? DEFAULT_LOCK_TIMEOUT_SEC;
  const qr = ds.createQueryRunner();
  try {
    await qr.connect();
    const [{ db }]: { db: string | null }[] = await qr.query('SELECT DATABASE() AS db');
    const name = migrationLockName(db ?? '');
    const [{ got }]: { got: number | string | null }[] = await qr.query('SELECT GET_LOCK(?, ?) AS got', [
      name,
      timeoutSec,
    ]);
    if (Number(got) !== 1) {
      throw new Error(
        `could not take the migration lock "${name}" within ${timeoutSec} s: another process is still migrating this database`,
      );
    }
    try {
      return await work();
    } finally {
      await qr.query('SELECT RELEASE_LOCK(?)', [name]).catch(() => undefined);
    }
  } finally {
    await qr.release().catch(() => undefined);
  }
}

/** Lock names are limited to 64 characters. */
export function migrationLockName(database: string): string {
  const name = `relay_migrations:${database}`;
  return name.length <= 64 ? name : `relay_migrations:${createHash('sha1').update(database).digest('hex')}`;
}
