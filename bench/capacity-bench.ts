/**
 * `npm run bench:capacity`: the per-unit figures docs/capacity.md builds its fleet model on, each
 * measured in a bounded phase and printed as one table at the end (figure, value, how it was measured).
 *
 *   connections  N idle authenticated WebSocket connections (hello -> welcome) to ONE relay gateway
 *                process, per engine: heap and RSS per connection (after a forced GC), connect rate
 *                and server CPU per connect, then an idle window (one heartbeat or more): CPU and, on
 *                the production engine, Redis commands per connection per second.
 *   outbox       MysqlOutboxDriver driven directly on a database of its own (dropped at the end) with
 *                router-shaped appends (M messages x R recipients each, K appends in flight, one lane
 *                per "partition" with conversations of its own): delivery rows/s, appends/s, latency.
 *   production   a router process and a gateway process (APP_ROLES split, production engines) on a
 *                private redis-server, load from bench/peers/load.ts: deliveries per router CPU-second,
 *                per gateway CPU-second, per Redis CPU-second, and Redis commands per delivery
 *                (INFO commandstats before/after; the private Redis sees only this relay).
 *   redis        redis-benchmark against the private redis-server (SET, HSET and a 300-byte PUBLISH; unpipelined and -P 16).
 *   kafka        kafkajs with relay's producer settings (acks=all, one request in flight, batches of
 *                500) into a one-partition topic: records/s and MB/s per partition.
 *
 *   npm run bench:capacity                       # Kafka 127.0.0.1:19092 and MariaDB :3306 up; redis-server installed
 *   CAPACITY_PHASES=outbox,kafka npm run bench:capacity
 *
 * Knobs (env): CAPACITY_PHASES (all), CAPACITY_CONNECTIONS (15000; one process may hold 20,000 files),
 * CAPACITY_CONN_ENGINES (memory,production), CAPACITY_IDLE_SECONDS (50: two heartbeats), CAPACITY_OUTBOX_INFLIGHT (1,4,16),
 * CAPACITY_OUTBOX_SECONDS (15), CAPACITY_OUTBOX_MESSAGES (100), CAPACITY_OUTBOX_RECIPIENTS (10),
 * CAPACITY_OUTBOX_USERS (1000000), CAPACITY_ROOMS (100), CAPACITY_MEMBERS (10), CAPACITY_PER_SENDER (100),
 * CAPACITY_WINDOW (10), CAPACITY_REDIS_PORT (16390), CAPACITY_KAFKA_RECORDS (100000), CAPACITY_BROKER
 * (127.0.0.1:19092), CAPACITY_MYSQL (mysql://root@127.0.0.1:3306), CAPACITY_JSON (write the rows there).
 *
 * Figures are per process / per unit on purpose: on a shared 2-core machine wall-clock totals move with
 * the neighbours, CPU-seconds per unit much less. The load average at start and end is printed.
 */
import { ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { createConnection } from 'mysql2/promise';
import { DataSource } from 'typeorm';
import { createDataSource } from '../src/database/data-source';
import { runMigrationsLocked } from '../src/database/migrate';
import { MysqlOutboxDriver } from '../src/outbox/drivers/mysql-outbox.driver';
import { NewDelivery } from '../src/outbox/outbox.store';
import type { Command, ThroughputResult } from './peers/load';
import { benchRelayEnv } from './peers/relay-env';
import { cpuMs, freePort, reachable, until } from './bench-process';

const num = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
const list = (name: string, fallback: string): string[] =>
  (process.env[name] ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

const PHASES = list('CAPACITY_PHASES', 'connections,outbox,production,redis,kafka');
const CONNECTIONS = num('CAPACITY_CONNECTIONS', 15_000);
const CONN_ENGINES = list('CAPACITY_CONN_ENGINES', 'memory,production');
const IDLE_SECONDS = num('CAPACITY_IDLE_SECONDS', 50);
const OUTBOX_INFLIGHT = list('CAPACITY_OUTBOX_INFLIGHT', '1,4,16').map(Number);
const OUTBOX_SECONDS = num('CAPACITY_OUTBOX_SECONDS', 15);
const OUTBOX_MESSAGES = num('CAPACITY_OUTBOX_MESSAGES', 100);
const OUTBOX_RECIPIENTS = num('CAPACITY_OUTBOX_RECIPIENTS', 10);
const OUTBOX_USERS = num('CAPACITY_OUTBOX_USERS', 1_000_000);
const ROOMS = num('CAPACITY_ROOMS', 100);
const MEMBERS = num('CAPACITY_MEMBERS', 10);
const PER_SENDER = num('CAPACITY_PER_SENDER', 100);
const WINDOW = num('CAPACITY_WINDOW', 10);
const REDIS_PORT = num('CAPACITY_REDIS_PORT', 16390);
const KAFKA_RECORDS = num('CAPACITY_KAFKA_RECORDS', 100_000);
const BROKER = process.env.CAPACITY_BROKER ?? '127.0.0.1:19092';
const MYSQL = process.env.CAPACITY_MYSQL ?? 'mysql://root@127.0.0.1:3306';
const HEARTBEAT_MS = 25_000; // relay's default, stated so the idle window is known to cover one

const HERE = __dirname; // dist-bench/bench
const RELAY_DIR = join(HERE, '../..');
const HEAP_PROBE = join(HERE, 'peers/heap-probe.js');
const READY_TIMEOUT_MS = 90_000;
const RUN = randomUUID().slice(0, 6);

interface Figure {
  figure: string;
  value: string;
  phase: string;
  note?: string;
}
const figures: Figure[] = [];
const record = (phase: string, figure: string, value: string, note?: string) => {
  figures.push({ phase, figure, value, note });
  console.log(`  ${figure}: ${value}${note ? ` (${note})` : ''}`);
};

// ---- helpers -------------------------------------------------------------------------------------

/** User + system CPU a process has used so far, in ms (/proc/<pid>/stat). */
function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function ask<T>(child: ChildProcess, message: unknown, ms: number): Promise<T> {
  return new Promise<T>((ok, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`no answer to ${JSON.stringify(message)} in ${ms} ms`)),
      ms,
    );
    child.once('message', (m: { ok?: boolean; result?: T; error?: string }) => {
      clearTimeout(timer);
      if (m.ok === false) fail(new Error(m.error));
      else ok((m.result ?? m) as T);
    });
    child.send(message as object);
  });
}

async function heapUsed(child: ChildProcess): Promise<number> {
  return (await ask<{ heap: number }>(child, 'heap', 60_000)).heap;
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await gone;
  clearTimeout(timer);
}

interface Relay {
  child: ChildProcess;
  url: string;
}

async function startRelay(env: Record<string, string>): Promise<Relay> {
  const port = await freePort();
  const child = fork(join(RELAY_DIR, 'dist/main.js'), [], {
    cwd: RELAY_DIR,
    execArgv: ['--expose-gc', '--require', HEAP_PROBE],
    env: { ...process.env, ...benchRelayEnv(port), HEARTBEAT_MS: String(HEARTBEAT_MS), ...env },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code, signal) => reject(new Error(`relay exited early (${code ?? signal})`))),
  );
  exited.catch(() => undefined);
  await Promise.race([
    until(`relay on :${port} ready`, READY_TIMEOUT_MS, async () => {
      const res = await fetch(`http://127.0.0.1:${port}/health/ready`);
      return res.ok;
    }),
    exited,
  ]);
  return { child, url: `ws://127.0.0.1:${port}/ws` };
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
const f0 = (x: number) => Math.round(x).toLocaleString('en-US');
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

// ---- shared backends -----------------------------------------------------------------------------

const databases: string[] = [];
const topics: string[] = [];
let redisServer: ChildProcess | undefined;
let redisUrl = '';

async function createDatabase(name: string): Promise<string> {
  const conn = await createConnection(`${MYSQL}/`);
  await conn.query(`CREATE DATABASE IF NOT EXISTS \`${name}\` CHARACTER SET utf8mb4`);
  await conn.end();
  databases.push(name);
  return `${MYSQL}/${name}`;
}

/** A private redis-server for this run, so INFO commandstats and its CPU are relay's alone. */
async function privateRedis(): Promise<string> {
  if (redisUrl) return redisUrl;
  redisServer = spawn(
    'redis-server',
    [
      '--port',
      String(REDIS_PORT),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
    ],
    { stdio: 'ignore' },
  );
  redisServer.once('error', (e) => console.error(`redis-server: ${e.message} (install redis-server)`));
  const probe = new Redis(REDIS_PORT, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
  probe.on('error', () => undefined);
  await until(`redis-server on :${REDIS_PORT}`, 10_000, async () => {
    if (probe.status !== 'ready') await probe.connect();
    return (await probe.ping()) === 'PONG';
  });
  probe.disconnect();
  redisUrl = `redis://127.0.0.1:${REDIS_PORT}`;
  return redisUrl;
}

function engineEnv(name: string, mysqlUrl: string): Record<string, string> {
  const topic = `relay-capacity-${RUN}-${name}`;
  topics.push(topic, `${topic}.dlq`);
  return {
    ENGINE: 'production',
    KAFKA_BROKERS: BROKER,
    KAFKA_TOPIC: topic,
    KAFKA_GROUP_ID: topic,
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: `relay-capacity-${RUN}-${name}:`,
    MYSQL_URL: mysqlUrl,
  };
}

async function commandStats(redis: Redis): Promise<Map<string, number>> {
  const text = await redis.info('commandstats');
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

/** CPU the Redis server has used so far, in ms (INFO cpu: all its threads, microsecond resolution). */
async function redisCpuMs(redis: Redis): Promise<number> {
  const text = await redis.info('cpu');
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN);
  return (get('used_cpu_user') + get('used_cpu_sys')) * 1000;
}

function statsDelta(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  const d = new Map<string, number>();
  for (const [k, v] of b) {
    const x = v - (a.get(k) ?? 0);
    if (x > 0 && k !== 'info') d.set(k, x);
  }
  return d;
}

const total = (m: Map<string, number>) => [...m.values()].reduce((s, x) => s + x, 0);
const breakdown = (m: Map<string, number>, per: number) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${f2(v / per)}`)
    .join(', ');

// ---- phase: connections --------------------------------------------------------------------------

async function connectionsPhase(): Promise<void> {
  for (const engine of CONN_ENGINES) {
    console.log(`== connections: ${CONNECTIONS} idle connections to one gateway process (${engine} engine)`);
    let env: Record<string, string> = { ENGINE: 'memory' };
    let redis: Redis | undefined;
    if (engine === 'production') {
      await reachable('127.0.0.1', Number(BROKER.split(':')[1]), 'Kafka: bash scripts/infra.sh up');
      await privateRedis();
      env = {
        ...engineEnv('conn', await createDatabase(`relay_capacity_${RUN}_conn`)),
        APP_ROLES: 'gateway',
      };
      redis = new Redis(redisUrl);
    } else if (engine !== 'memory') throw new Error(`CAPACITY_CONN_ENGINES: unknown engine ${engine}`);
    const relay = await startRelay(env);
    const load = fork(join(HERE, 'peers/load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    try {
      const pid = relay.child.pid!;
      const heap0 = await heapUsed(relay.child);
      const rss0 = rssBytes(pid);
      const cpu0 = cpuMs(pid);
      const t0 = performance.now();
      await ask(
        load,
        {
          cmd: 'idle',
          dialect: 'relay',
          urls: [relay.url],
          count: CONNECTIONS,
          run: `${RUN}${engine[0]}`,
        } satisfies Command,
        600_000,
      );
      const openMs = performance.now() - t0;
      const cpu1 = cpuMs(pid);
      const heap1 = await heapUsed(relay.child);
      const rss1 = rssBytes(pid);
      const tag = `${engine}, ${CONNECTIONS} conns`;
      record('connections', `heap / idle connection (${engine})`, kb((heap1 - heap0) / CONNECTIONS), tag);
      record('connections', `RSS / idle connection (${engine})`, kb((rss1 - rss0) / CONNECTIONS), tag);
      record('connections', `gateway RSS with ${CONNECTIONS} idle (${engine})`, `${f0(rss1 / 2 ** 20)} MiB`);
      record(
        'connections',
        `connect rate, 50 handshakes in flight (${engine})`,
        `${f0((CONNECTIONS / openMs) * 1000)} /s`,
        'upgrade + hello -> welcome; load process on the same cores',
      );
      record(
        'connections',
        `gateway CPU / connect (${engine})`,
        `${f0(((cpu1 - cpu0) * 1000) / CONNECTIONS)} us`,
      );
      const stats0 = redis ? await commandStats(redis) : undefined;
      const rc0 = redis ? await redisCpuMs(redis) : NaN;
      const cpu2 = cpuMs(pid);
      const i0 = performance.now();
      await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
      const idleS = (performance.now() - i0) / 1000;
      const cpu3 = cpuMs(pid);
      const window = `${f0(idleS)} s window, HEARTBEAT_MS ${HEARTBEAT_MS}`;
      record(
        'connections',
        `idle gateway CPU per 10k connections (${engine})`,
        `${f2(((cpu3 - cpu2) / 1000 / idleS) * (10_000 / CONNECTIONS) * 100)} % of a core`,
        window,
      );
      if (redis && stats0) {
        const d = statsDelta(stats0, await commandStats(redis));
        const rc1 = await redisCpuMs(redis);
        record(
          'connections',
          'idle Redis commands / connection / s (production)',
          f2(total(d) / CONNECTIONS / idleS),
          `${window}; per connection per heartbeat: ${breakdown(d, (CONNECTIONS * idleS * 1000) / HEARTBEAT_MS)}`,
        );
        record(
          'connections',
          'idle Redis CPU per 10k connections (production)',
          `${f2(((rc1 - rc0) / 1000 / idleS) * (10_000 / CONNECTIONS) * 100)} % of a core`,
          'private redis-server, INFO cpu',
        );
      }
      await ask(load, { cmd: 'close-all' } satisfies Command, 60_000);
    } finally {
      load.kill();
      redis?.disconnect();
      await stop(relay.child);
    }
  }
}

// ---- phase: outbox -------------------------------------------------------------------------------

/** The pid of the MariaDB server behind `ds` (from its pid file: other servers may run on the machine). */
async function mariadbPid(ds: DataSource): Promise<number | undefined> {
  try {
    const [{ file }] = (await ds.query('SELECT @@pid_file AS file')) as { file: string }[];
    const pid = Number(readFileSync(file, 'utf8').trim());
    cpuMs(pid);
    return pid;
  } catch {
    return undefined; // not readable from here: the figure is left out
  }
}

async function outboxPhase(): Promise<void> {
  console.log(
    `== outbox: MysqlOutboxDriver, appends of ${OUTBOX_MESSAGES} messages x ${OUTBOX_RECIPIENTS} recipients, ` +
      `${OUTBOX_USERS} users, ${OUTBOX_SECONDS} s per setting`,
  );
  const url = await createDatabase(`relay_capacity_${RUN}_outbox`);
  const ds = createDataSource(url, { poolSize: Math.max(...OUTBOX_INFLIGHT) + 2 });
  await ds.initialize();
  try {
    await runMigrationsLocked(ds);
    const [settings] = (await ds.query(
      'SELECT VERSION() AS v, @@innodb_flush_log_at_trx_commit AS flush, @@log_bin AS binlog, @@sync_binlog AS sync_binlog, @@innodb_buffer_pool_size AS pool',
    )) as { v: string; flush: number; binlog: number; sync_binlog: number; pool: number }[];
    const server =
      `MariaDB ${settings.v}, innodb_flush_log_at_trx_commit=${settings.flush}, log_bin=${settings.binlog}, ` +
      `sync_binlog=${settings.sync_binlog}, buffer pool ${f0(settings.pool / 2 ** 20)} MiB`;
    console.log(`  ${server}`);
    const outbox = await new MysqlOutboxDriver(ds, 86_400).init();
    const body = { text: 'x'.repeat(100) };
    const dbPid = await mariadbPid(ds);
    let allRows = 0;
    let allEntries = 0;
    for (const inflight of OUTBOX_INFLIGHT) {
      // One lane per partition; each lane's conversations are its own (a conversation lives on one
      // partition) and have fixed members drawn from the whole user pool, so lanes share users.
      const lanes = Array.from({ length: inflight }, (_, lane) =>
        Array.from({ length: 1000 }, (_, c) => ({
          id: `cap-${RUN}-k${inflight}-p${lane}-c${c}`,
          members: Array.from(
            { length: OUTBOX_RECIPIENTS },
            () => `u${Math.floor(Math.random() * OUTBOX_USERS)}`,
          ),
        })),
      );
      let appends = 0;
      let rows = 0;
      let n = 0;
      const lat: number[] = [];
      const deadline = performance.now() + OUTBOX_SECONDS * 1000;
      const cpu0 = process.cpuUsage();
      const db0 = dbPid ? cpuMs(dbPid) : NaN;
      const t0 = performance.now();
      await Promise.all(
        lanes.map(async (conversations) => {
          while (performance.now() < deadline) {
            const batch: NewDelivery[] = [];
            for (let m = 0; m < OUTBOX_MESSAGES; m++) {
              const conv = conversations[Math.floor(Math.random() * conversations.length)];
              const envelope = {
                id: `${RUN}-${inflight}-${++n}`,
                conversation_id: conv.id,
                from: conv.members[0],
                ts: Date.now(),
                body,
              };
              for (const userId of conv.members) batch.push({ userId, envelope });
            }
            const s = performance.now();
            const stored = await outbox.append(batch);
            lat.push(performance.now() - s);
            appends++;
            rows += stored.length;
          }
        }),
      );
      const elapsedS = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const db1 = dbPid ? cpuMs(dbPid) : NaN;
      lat.sort((a, b) => a - b);
      const p = (q: number) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))];
      const tag = `${inflight} in flight`;
      record('outbox', `delivery rows / s, one MariaDB (${tag})`, f0(rows / elapsedS), server);
      record(
        'outbox',
        `appends / s (${tag})`,
        f0(appends / elapsedS),
        `p50 ${f1(p(0.5))} ms, p99 ${f1(p(0.99))} ms`,
      );
      record(
        'outbox',
        `client CPU / 1000 rows (${tag})`,
        `${f1(((cpu.user + cpu.system) / 1000 / rows) * 1000)} ms`,
        'the router-side cost of the append (mysql2, SQL text)',
      );
      if (dbPid)
        record(
          'outbox',
          `MariaDB CPU / 1000 rows (${tag})`,
          `${f1(((db1 - db0) / rows) * 1000)} ms = ${f0(rows / ((db1 - db0) / 1000))} rows / MariaDB CPU-s`,
          'whole server: other users of it are included',
        );
      allRows += rows;
      allEntries += n;
    }
    // What a retained delivery and entry cost on disk (InnoDB data + indexes, after ANALYZE).
    await ds.query('ANALYZE TABLE outbox_delivery, outbox_entry');
    const sizes = (await ds.query(
      `SELECT table_name AS t, data_length + index_length AS bytes FROM information_schema.tables
       WHERE table_schema = DATABASE() AND table_name IN ('outbox_delivery', 'outbox_entry')`,
    )) as { t: string; bytes: number }[];
    const size = (t: string) => Number(sizes.find((x) => x.t === t)?.bytes ?? NaN);
    record(
      'outbox',
      'disk / delivery row',
      `${f0(size('outbox_delivery') / allRows)} B`,
      `InnoDB data + indexes of outbox_delivery over ${f0(allRows)} rows`,
    );
    record(
      'outbox',
      'disk / entry (100-byte body)',
      `${f0(size('outbox_entry') / allEntries)} B`,
      `outbox_entry over ${f0(allEntries)} entries`,
    );
  } finally {
    await ds.destroy();
  }
}

// ---- phase: production ---------------------------------------------------------------------------

async function productionPhase(): Promise<void> {
  console.log(
    `== production: router + gateway processes, ${ROOMS} rooms x ${MEMBERS} members, ${PER_SENDER} per sender, window ${WINDOW}`,
  );
  await reachable('127.0.0.1', Number(BROKER.split(':')[1]), 'Kafka: bash scripts/infra.sh up');
  await privateRedis();
  const env = engineEnv('prod', await createDatabase(`relay_capacity_${RUN}_prod`));
  const router = await startRelay({ ...env, APP_ROLES: 'router' });
  let gateway: Relay | undefined;
  const load = fork(join(HERE, 'peers/load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const redis = new Redis(redisUrl);
  try {
    gateway = await startRelay({ ...env, APP_ROLES: 'gateway' });
    await ask(
      load,
      {
        cmd: 'setup-rooms',
        dialect: 'relay',
        urls: [gateway.url],
        conversations: ROOMS,
        members: MEMBERS,
        run: `${RUN}p`,
      } satisfies Command,
      300_000,
    );
    const stats0 = await commandStats(redis);
    const r0 = cpuMs(router.child.pid!);
    const g0 = cpuMs(gateway.child.pid!);
    const x0 = await redisCpuMs(redis);
    const tp = await ask<ThroughputResult>(
      load,
      {
        cmd: 'throughput',
        perSender: PER_SENDER,
        window: WINDOW,
        payloadBytes: 100,
        timeoutMs: 300_000,
      } satisfies Command,
      400_000,
    );
    const r1 = cpuMs(router.child.pid!);
    const g1 = cpuMs(gateway.child.pid!);
    const x1 = await redisCpuMs(redis);
    const d = statsDelta(stats0, await commandStats(redis));
    const delivered = tp.delivered;
    const tag = `${tp.acked} messages, ${delivered}/${tp.expected} deliveries`;
    record(
      'production',
      'deliveries / s, wall clock (1 router + 1 gateway)',
      f0((delivered / tp.elapsedMs) * 1000),
      tag,
    );
    record(
      'production',
      'deliveries / router CPU-second',
      f0(delivered / ((r1 - r0) / 1000)),
      `router ${f1((r1 - r0) / 1000)} CPU-s`,
    );
    record(
      'production',
      'deliveries / gateway CPU-second',
      f0(delivered / ((g1 - g0) / 1000)),
      'ingress + egress of both sides',
    );
    record(
      'production',
      'deliveries / Redis CPU-second',
      f0(delivered / ((x1 - x0) / 1000)),
      'private redis-server, INFO cpu',
    );
    record('production', 'Redis commands / delivery', f2(total(d) / delivered), breakdown(d, delivered));
    record(
      'production',
      'Redis commands / message',
      f2(total(d) / Math.max(tp.acked, 1)),
      `fan-out ${MEMBERS}`,
    );
    record(
      'production',
      'ack p50 / p99; delivery p50 / p99',
      `${f1(tp.ack[0])} / ${f1(tp.ack[1])} ms; ${f1(tp.delivery[0])} / ${f1(tp.delivery[1])} ms`,
      'saturated run: queueing, not the idle latency',
    );
    await ask(load, { cmd: 'close-all' } satisfies Command, 60_000);
  } finally {
    load.kill();
    redis.disconnect();
    await stop(gateway?.child);
    await stop(router.child);
  }
}

// ---- phase: redis-benchmark ----------------------------------------------------------------------

async function redisPhase(): Promise<void> {
  console.log(`== redis: redis-benchmark on the private redis-server :${REDIS_PORT}`);
  await privateRedis();
  // SET (send dedupe), HSET (session entry) and a PUBLISH of a ~300-byte push to a channel nobody reads.
  const push = `{"type":"push","node":"n1","deliveries":[${'x'.repeat(260)}]}`;
  for (const pipeline of [1, 16]) {
    const base = ['-p', String(REDIS_PORT), '-q', '-n', '100000', '-P', String(pipeline)];
    for (const args of [
      [...base, '-t', 'set,hset'],
      [...base, 'PUBLISH', 'relay:node:{n1}', push],
    ]) {
      const out = execFileSync('redis-benchmark', args, { encoding: 'utf8', timeout: 120_000 });
      const shown = args.map((a) => (a === push ? '<300 B>' : a)).join(' ');
      for (const m of out.matchAll(/(?:^|[\r\n])([^\r\n]+?): ([\d.]+) requests per second/g))
        record(
          'redis',
          `redis-benchmark ${m[1].split(' ')[0]} -P ${pipeline}`,
          `${f0(Number(m[2]))} ops/s`,
          `redis-benchmark ${shown}`,
        );
    }
  }
  // The routers read the whole live-node registry (one sorted set) once per bus batch: its cost with
  // as many gateways as the 10M-connection fleet has.
  const redis = new Redis(redisUrl);
  try {
    const key = 'relay-capacity:nodes';
    for (const nodes of [100, 1000]) {
      await redis.del(key);
      const now = Date.now();
      await redis.zadd(key, ...Array.from({ length: nodes }, (_, i) => [now, `gateway-${RUN}-${i}`]).flat());
      const args = [
        '-p',
        String(REDIS_PORT),
        '-q',
        '-n',
        '20000',
        'ZRANGEBYSCORE',
        key,
        String(now - 75_000),
        '+inf',
      ];
      const out = execFileSync('redis-benchmark', args, { encoding: 'utf8', timeout: 120_000 });
      const m = /([\d.]+) requests per second/.exec(
        out
          .split(/[\r\n]/)
          .filter(Boolean)
          .at(-1) ?? '',
      );
      record(
        'redis',
        `ZRANGEBYSCORE of a ${nodes}-node registry (the router's liveNodes)`,
        `${f0(Number(m?.[1]))} ops/s`,
        `redis-benchmark ${args.join(' ')}`,
      );
    }
    await redis.del(key);
  } finally {
    redis.disconnect();
  }
}

// ---- phase: kafka --------------------------------------------------------------------------------

async function kafkaPhase(): Promise<void> {
  console.log(`== kafka: ${KAFKA_RECORDS} records into one partition, relay's producer settings`);
  const kafka = new Kafka({
    clientId: `relay-capacity-${RUN}`,
    brokers: [BROKER],
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `relay-capacity-${RUN}-p1`;
  topics.push(topic);
  await admin.createTopics({
    topics: [{ topic, numPartitions: 1, replicationFactor: 1 }],
    waitForLeaders: true,
  });
  await admin.disconnect();
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: false,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  try {
    // A bus record of a 100-byte body is ~300 bytes of JSON; relay's Batcher sends <= 500 per request.
    const value = JSON.stringify({
      kind: 'message',
      schema_version: 1,
      id: '01JD6Z5C1Q8N3V9K4T2X7M0BAP',
      conversation_id: 'conversation-000001',
      from: 'user-000001',
      ts: Date.now(),
      ref: 'r1',
      body: { t: 0, n: 0, pad: 'x'.repeat(100) },
    });
    const batch = Array.from({ length: 500 }, () => ({ key: 'conversation-000001', value }));
    const t0 = performance.now();
    for (let sent = 0; sent < KAFKA_RECORDS; sent += batch.length)
      await producer.send({ topic, acks: -1, messages: batch });
    const s = (performance.now() - t0) / 1000;
    record(
      'kafka',
      'records / s into one partition (acks=all, 1 request in flight, 500 per request)',
      f0(KAFKA_RECORDS / s),
      `${value.length} B records, ${f1((KAFKA_RECORDS * value.length) / s / 2 ** 20)} MB/s, replication 1`,
    );
  } finally {
    await producer.disconnect();
  }
}

// ---- main ----------------------------------------------------------------------------------------

async function cleanup(): Promise<void> {
  if (topics.length) {
    const admin = new Kafka({
      clientId: `relay-capacity-${RUN}`,
      brokers: [BROKER],
      logLevel: logLevel.NOTHING,
    }).admin();
    try {
      await admin.connect();
      const existing = new Set(await admin.listTopics());
      const mine = topics.filter((t) => existing.has(t));
      if (mine.length) await admin.deleteTopics({ topics: mine, timeout: 30_000 });
      const groups = (await admin.listGroups()).groups
        .map((g) => g.groupId)
        .filter((g) => g.startsWith(`relay-capacity-${RUN}`));
      if (groups.length) await admin.deleteGroups(groups).catch(() => undefined);
    } catch (e) {
      console.error(`cleanup: Kafka topics ${topics.join(',')} not deleted: ${(e as Error).message}`);
    } finally {
      await admin.disconnect();
    }
  }
  if (databases.length) {
    const conn = await createConnection(`${MYSQL}/`);
    for (const db of databases) await conn.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await conn.end();
  }
  await stop(redisServer);
}

function commit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: RELAY_DIR, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function table(rows: Figure[]): string {
  const head = ['phase', 'figure', 'value', 'how / note'];
  const body = rows.map((r) => [r.phase, r.figure, r.value, r.note ?? '']);
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((l) => l[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const known = ['connections', 'outbox', 'production', 'redis', 'kafka'];
  const unknown = PHASES.filter((p) => !known.includes(p));
  if (unknown.length)
    throw new Error(`unknown CAPACITY_PHASES ${unknown.join(',')} (known: ${known.join(',')})`);
  const started = new Date().toISOString();
  const load0 = loadavg().map(f1).join(' ');
  console.log(
    `capacity bench ${RUN}: commit ${commit()}, ${started}, node ${process.version}, load ${load0}`,
  );
  try {
    if (PHASES.includes('connections')) await connectionsPhase();
    if (PHASES.includes('outbox')) await outboxPhase();
    if (PHASES.includes('production')) await productionPhase();
    if (PHASES.includes('redis')) await redisPhase();
    if (PHASES.includes('kafka')) await kafkaPhase();
  } finally {
    await cleanup();
  }
  console.log(
    `\ncommit ${commit()}, ${started} -> ${new Date().toISOString()}, load average ${load0} -> ${loadavg().map(f1).join(' ')}\n`,
  );
  console.log(table(figures));
  if (process.env.CAPACITY_JSON)
    writeFileSync(process.env.CAPACITY_JSON, JSON.stringify({ run: RUN, started, figures }, null, 2));
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
