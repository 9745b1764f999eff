import 'reflect-metadata';
import { loadConfig } from '../config/app-config';
import { ConfigError } from '../config/env.validation';
import { createDataSource, redactUrl } from './data-source';
import { migrationStatus, revertLastMigration, runMigrationsLocked } from './migrate';

/**
 * Schema migrations for the MySQL engine, against MYSQL_URL and every OUTBOX_SHARDS database (same
 * configuration as the service), one after the other:
 *
 *   node dist/database/migrate.cli.js [up]    apply pending migrations (under the migration lock)
 *   node dist/database/migrate.cli.js revert  revert the most recent one
 *   node dist/database/migrate.cli.js status  list migrations and whether they are applied
 *
 * Exit codes: 0 done, 1 failed, 2 usage, 78 invalid configuration.
 */
const USAGE = 'usage: migrate.cli.js [up|revert|status]';

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function main(argv: string[]): Promise<number> {
  const command = argv[0] ?? 'up';
  if (!['up', 'revert', 'status'].includes(command) || argv.length > 1) {
    console.error(USAGE);
    return 2;
  }
  let urls: string[];
  try {
    const config = loadConfig();
    urls = [...new Set([config.mysql.url, ...config.outbox.shards])];
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 78;
    }
    throw err;
  }

  for (const url of urls) {
    const code = await migrate(command, url, urls.length > 1 ? `${redactUrl(url)}: ` : '');
    if (code !== 0) return code;
  }
  return 0;
}

async function migrate(command: string, url: string, label: string): Promise<number> {
  const ds = createDataSource(url, { poolSize: 2 });
  try {
    await ds.initialize();
  } catch (err) {
    console.error(`cannot connect to MySQL at ${redactUrl(url)}: ${(err as Error).message}`);
    return 1;
  }
  try {
    if (command === 'up') {
      const applied = await runMigrationsLocked(ds);
      out(`${label}${applied.length > 0 ? `applied: ${applied.join(', ')}` : 'schema is up to date'}`);
    } else if (command === 'revert') {
      const reverted = await revertLastMigration(ds);
      out(`${label}${reverted ? `reverted: ${reverted}` : 'nothing to revert'}`);
    } else {
      for (const m of await migrationStatus(ds)) out(`${label}${m.executed ? '[x]' : '[ ]'} ${m.name}`);
    }
    return 0;
  } catch (err) {
    console.error(`${label}migration ${command} failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await ds.destroy().catch(() => undefined);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`fatal: ${err.message}`);
    process.exit(1);
  },
);
