import { DataSource } from 'typeorm';
import { MIGRATIONS } from './migrations';

/** Bookkeeping table of TypeORM's migration runner (which migrations ran, when). */
export const MIGRATIONS_TABLE = 'relay_migrations';

export interface DataSourceOptions {
  /** Connection pool size per DataSource (mysql2 `connectionLimit`). */
  poolSize?: number;
}

/**
 * The MySQL/MariaDB DataSource of the outbox and the built-in directory. No entities and never
 * `synchronize`: the schema is owned by the hand-written migrations in ./migrations, and the drivers
 * speak SQL through query runners.
 */
export function createDataSource(url: string, options: DataSourceOptions = {}): DataSource {
  return new DataSource({
    type: 'mysql',
    url,
    charset: 'utf8mb4',
    // BIGINTs come back as numbers while they are safe integers (seqs are), as strings beyond.
    supportBigNumbers: true,
    bigNumberStrings: false,
    poolSize: options.poolSize ?? 10,
    // The outbox sends a transaction's statements in two round trips (src/outbox/drivers/
    // mysql-outbox.driver.ts). Safe: every value goes through placeholders, never into the SQL text.
    multipleStatements: true,
    connectTimeout: 10_000,
    entities: [],
    migrations: MIGRATIONS,
    migrationsTableName: MIGRATIONS_TABLE,
    migrationsRun: false,
    synchronize: false,
    logging: false,
  });
}

/** `mysql://user:secret@host:3306/db` -> `mysql://user@host:3306/db`, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return '<invalid MYSQL_URL>';
  }
}
