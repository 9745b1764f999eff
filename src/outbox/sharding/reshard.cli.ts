import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { createDataSource, redactUrl } from '../../database/data-source';
import { runMigrationsLocked } from '../../database/migrate';
import { Resharder } from './reshard';

/**
 * Moves outbox data between shard layouts (docs/scaling.md, "Adding a shard"):
 *
 *   npm run outbox:reshard -- copy    --from <old OUTBOX_SHARDS> --to <new OUTBOX_SHARDS>
 *   npm run outbox:reshard -- cleanup --from <old OUTBOX_SHARDS> --to <new OUTBOX_SHARDS>
 *
 * `copy` with the routers stopped, then restart everything on the new OUTBOX_SHARDS, then `cleanup`.
 * Lists are comma-separated mysql:// URLs in shard order (a single database counts as a one-shard
 * list). Exit codes: 0 done, 1 failed, 2 usage.
 */
const USAGE = 'usage: reshard.cli.js copy|cleanup --from <url,url,...> --to <url,url,...>';

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const args = new Map<string, string>();
  for (let i = 0; i + 1 < rest.length; i += 2) args.set(rest[i], rest[i + 1]);
  const split = (v: string | undefined) =>
    (v ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  const from = split(args.get('--from'));
  const to = split(args.get('--to'));
  if (!['copy', 'cleanup'].includes(command) || rest.length !== 4 || from.length === 0 || to.length === 0) {
    console.error(USAGE);
    return 2;
  }
  const pools = new Map<string, DataSource>();
  const pool = async (url: string): Promise<DataSource> => {
    let ds = pools.get(url);
    if (!ds) {
      ds = createDataSource(url, { poolSize: 2 });
      pools.set(url, ds);
      await ds.initialize();
      await runMigrationsLocked(ds); // a new shard gets the schema first
    }
    return ds;
  };
  try {
    const resharder = new Resharder(await Promise.all(from.map(pool)), await Promise.all(to.map(pool)));
    const t0 = Date.now();
    const report = command === 'copy' ? await resharder.copy() : await resharder.cleanup();
    process.stdout.write(
      `${command}: ${report.users} users, ${report.conversations} conversations, ${report.deliveries} deliveries, ` +
        `${report.entries} entries in ${Date.now() - t0} ms (${from.map(redactUrl).join(',')} -> ${to.map(redactUrl).join(',')})\n`,
    );
    return 0;
  } catch (err) {
    console.error(`reshard ${command} failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await Promise.all([...pools.values()].map((ds) => ds.destroy().catch(() => undefined)));
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`fatal: ${err.message}`);
    process.exit(1);
  },
);
