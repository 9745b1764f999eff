/**
 * `npm run bench:outbox`: the MySQL outbox's append on its own, careful path against the optimistic
 * one (src/outbox/drivers/mysql-outbox.driver.ts, header points 5 and 6), interleaved in rounds so a
 * noisy neighbour hits both. Two shapes, the router's:
 * - rooms: OUTBOX_WRITERS writers at once (a router's partitions in flight), each appending batches of
 *   OUTBOX_BATCH messages to conversations of 10 members of its own;
 * - big room: one message to a 1000-member conversation, one append at a time.
 * Prints deliveries/s, MariaDB CPU and this process's CPU per delivery (from /proc), append p50/p99.
 *
 *   npm run bench:outbox            # MariaDB on 127.0.0.1:3306 (root); OUTBOX_MYSQL_SERVER to change
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { createConnection } from 'mysql2/promise';
import { createDataSource } from '../src/database/data-source';
import { runMigrationsLocked } from '../src/database/migrate';
import { MysqlOutboxDriver } from '../src/outbox/drivers/mysql-outbox.driver';
import { NewDelivery } from '../src/outbox/outbox.store';
import { cpuMs } from './bench-process';

const SERVER = process.env.OUTBOX_MYSQL_SERVER ?? 'mysql://root@127.0.0.1:3306';
const WRITERS = Number(process.env.OUTBOX_WRITERS ?? 4);
const BATCH = Number(process.env.OUTBOX_BATCH ?? 50);
const BATCHES = Number(process.env.OUTBOX_BATCHES ?? 60); // per writer per round
const BIG_APPENDS = Number(process.env.OUTBOX_BIG_APPENDS ?? 40);
const ROUNDS = Number(process.env.OUTBOX_ROUNDS ?? 3);
const BODY = { text: 'x'.repeat(100) };

interface Figures {
  deliveries: number;
  wallMs: number;
  dbCpuMs: number;
  ownCpuMs: number;
  latencies: number[];
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

let seq = 0;
function message(conversation: string, from: string): NewDelivery['envelope'] {
  return {
    id: `m${Date.now().toString(36)}${(seq++).toString(36)}`,
    conversation_id: conversation,
    from,
    ts: Date.now(),
    body: BODY,
  };
}

async function measure(dbPid: number, work: (latencies: number[]) => Promise<number>): Promise<Figures> {
  const latencies: number[] = [];
  const db0 = cpuMs(dbPid);
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  const deliveries = await work(latencies);
  const own = process.cpuUsage(own0);
  return {
    deliveries,
    wallMs: performance.now() - t0,
    dbCpuMs: cpuMs(dbPid) - db0,
    ownCpuMs: (own.user + own.system) / 1000,
    latencies,
  };
}

async function timed(latencies: number[], f: () => Promise<unknown>): Promise<void> {
  const t = performance.now();
  await f();
  latencies.push(performance.now() - t);
}

function rooms(store: MysqlOutboxDriver, run: string) {
  return async (latencies: number[]): Promise<number> => {
    let n = 0;
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, w) => {
        for (let b = 0; b < BATCHES; b++) {
          const deliveries: NewDelivery[] = [];
          for (let i = 0; i < BATCH; i++) {
            const room = (b * BATCH + i) % 25;
            const envelope = message(`${run}-w${w}-r${room}`, `${run}-w${w}-r${room}-u${i % 10}`);
            for (let u = 0; u < 10; u++) deliveries.push({ userId: `${run}-w${w}-r${room}-u${u}`, envelope });
          }
          await timed(latencies, () => store.append(deliveries));
          n += deliveries.length;
        }
      }),
    );
    return n;
  };
}

function bigRoom(store: MysqlOutboxDriver, run: string) {
  return async (latencies: number[]): Promise<number> => {
    let n = 0;
    for (let a = 0; a < BIG_APPENDS; a++) {
      const envelope = message(`${run}-big`, `${run}-big-u0`);
      const deliveries = Array.from({ length: 1000 }, (_, u) => ({ userId: `${run}-big-u${u}`, envelope }));
      await timed(latencies, () => store.append(deliveries));
      n += deliveries.length;
    }
    return n;
  };
}

async function main(): Promise<void> {
  const admin = await createConnection(SERVER);
  const [[{ pidFile }]] = (await admin.query('SELECT @@pid_file AS pidFile')) as unknown as [
    [{ pidFile: string }],
  ];
  const dbPid = Number(readFileSync(pidFile, 'utf8').trim());
  const database = `relay_bench_outbox_${randomUUID().slice(0, 8)}`;
  await admin.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4`);
  const ds = createDataSource(`${SERVER}/${database}`, { poolSize: WRITERS + 2 });
  try {
    await ds.initialize();
    await runMigrationsLocked(ds);
    const stores = {
      careful: await new MysqlOutboxDriver(ds, 3600, { optimistic: false }).init(),
      optimistic: await new MysqlOutboxDriver(ds, 3600, { optimistic: true }).init(),
    };
    const results = new Map<string, Figures[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const [mode, store] of Object.entries(stores)) {
        const run = `${round}${mode[0]}`;
        for (const [shape, work] of [
          ['rooms', rooms(store, run)],
          ['big room', bigRoom(store, run)],
        ] as const) {
          const key = `${shape} | ${mode}`;
          results.set(key, [...(results.get(key) ?? []), await measure(dbPid, work)]);
        }
      }
    }
    console.log(
      `\nrooms: ${WRITERS} writers x ${BATCHES} batches x ${BATCH} messages x 10 members; big room: ${BIG_APPENDS} appends x 1000 members; ${ROUNDS} rounds, interleaved\n`,
    );
    console.log(
      '| shape | path | deliveries/s | MariaDB CPU µs/delivery | node CPU µs/delivery | append p50 ms | append p99 ms |',
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const [key, runs] of results) {
      const sum = (f: (r: Figures) => number) => runs.reduce((a, r) => a + f(r), 0);
      const n = sum((r) => r.deliveries);
      const lat = runs.flatMap((r) => r.latencies);
      const [shape, mode] = key.split(' | ');
      console.log(
        `| ${shape} | ${mode} | ${Math.round((n / sum((r) => r.wallMs)) * 1000)} | ${((sum((r) => r.dbCpuMs) * 1000) / n).toFixed(1)} | ${((sum((r) => r.ownCpuMs) * 1000) / n).toFixed(1)} | ${pct(lat, 50).toFixed(1)} | ${pct(lat, 99).toFixed(1)} |`,
      );
    }
  } finally {
    await ds.destroy().catch(() => undefined);
    await admin.query(`DROP DATABASE IF EXISTS \`${database}\``);
    await admin.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
