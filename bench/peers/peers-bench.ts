/**
 * `npm run bench:peers`: relay side by side with the peers that do the same job but persist nothing:
 * a minimal raw `ws` relay and Socket.IO (one node, and two nodes through @socket.io/redis-adapter).
 * Same load shape and payload for every target; the load generator runs in its own process
 * (load.ts), servers each in theirs, and the table ends with ratios from this one run.
 *
 * Per target: boot -> ready time; idle heap per connection (after a forced GC, via heap-probe.ts);
 * throughput (every room's sender keeps WINDOW sends unacked); ack and delivery p50/p99; server CPU
 * per delivery and RSS at the end; one big room's send -> last delivery p50/p99. The CPU of the
 * backends running on this machine (MariaDB, Kafka, Redis) per delivery during the throughput run
 * shows what the durability costs on the same cores (the peers use at most Redis).
 *
 *   npm run bench:peers                                   # all targets (Kafka/Redis/MariaDB up for relay-production)
 *   PEERS_TARGETS=relay-embedded,ws,socketio npm run bench:peers
 *   PEERS_RELAY_DIR=/path/to/other/checkout npm run bench:peers   # measure another build of relay (its dist/)
 *
 * Knobs (env): PEERS_CONVERSATIONS (100), PEERS_MEMBERS (10), PEERS_PER_SENDER (50), PEERS_WINDOW (10),
 * PEERS_PAYLOAD (100 bytes of padding), PEERS_IDLE (2000), PEERS_BIGROOM (1000), PEERS_BIGROOM_MESSAGES (30),
 * PEERS_TIMEOUT_MS (120000), PEERS_JSON (write the results there too).
 */
import { ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { homedir } from 'node:os';
import Redis from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { createConnection } from 'mysql2/promise';
import type { Command, Dialect, ThroughputResult } from './load';
import { benchRelayEnv } from './relay-env';
import { cpuMs, freePort, reachable } from '../bench-process';

const env = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
const SHAPE = {
  conversations: env('PEERS_CONVERSATIONS', 100),
  members: env('PEERS_MEMBERS', 10),
  perSender: env('PEERS_PER_SENDER', 50),
  window: env('PEERS_WINDOW', 10),
  payloadBytes: env('PEERS_PAYLOAD', 100),
  idle: env('PEERS_IDLE', 2000),
  bigRoom: env('PEERS_BIGROOM', 1000),
  bigRoomMessages: env('PEERS_BIGROOM_MESSAGES', 30),
  timeoutMs: env('PEERS_TIMEOUT_MS', 120_000),
};
const READY_TIMEOUT_MS = 60_000;
const HERE = __dirname; // dist-bench/bench/peers
const RELAY_DIR = resolve(process.env.PEERS_RELAY_DIR ?? join(HERE, '../../..'));
const HEAP_PROBE = join(HERE, 'heap-probe.js');

interface Target {
  name: string;
  dialect: Dialect;
  processes: number;
  /** What peer the ratios compare it with. */
  start(run: string): Promise<Server[]>;
  /** After its servers stopped: drops what `start` created (database, topic, keys). */
  cleanup?(run: string): Promise<void>;
}

interface Server {
  child: ChildProcess;
  url: string;
  bootMs: number;
}

function until<T>(what: string, ms: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  return (async () => {
    for (;;) {
      const v = await attempt().catch(() => undefined);
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
}

function spawnServer(script: string, extraEnv: Record<string, string>): ChildProcess {
  return fork(script, [], {
    cwd: RELAY_DIR,
    execArgv: ['--expose-gc', '--require', HEAP_PROBE],
    env: { ...process.env, ...extraEnv },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
}

function exited(child: ChildProcess): Promise<never> {
  return new Promise((_, reject) =>
    child.once('exit', (code, signal) => reject(new Error(`server exited early (${code ?? signal})`))),
  );
}

async function startPeer(script: string, extraEnv: Record<string, string>): Promise<Server> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawnServer(join(HERE, script), { ...extraEnv, PORT: String(port) });
  await Promise.race([new Promise<void>((r) => child.once('message', () => r())), exited(child)]);
  return { child, url: `ws://127.0.0.1:${port}/ws`, bootMs: performance.now() - t0 };
}

async function startRelay(extraEnv: Record<string, string>): Promise<Server> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawnServer(join(RELAY_DIR, 'dist/main.js'), { ...benchRelayEnv(port), ...extraEnv });
  const ready = until(`relay on :${port} ready`, READY_TIMEOUT_MS, async () => {
    const res = await fetch(`http://127.0.0.1:${port}/health/ready`);
    return res.ok ? true : undefined;
  });
  await Promise.race([ready, exited(child)]);
  return { child, url: `ws://127.0.0.1:${port}/ws`, bootMs: performance.now() - t0 };
}

const TARGETS: Target[] = [
  {
    name: 'relay-embedded',
    dialect: 'relay',
    processes: 1,
    start: async () => [await startRelay({ ENGINE: 'memory' })],
  },
  {
    name: 'relay-production',
    dialect: 'relay',
    processes: 2,
    start: async (run) => {
      await reachable('127.0.0.1', 19092, 'Kafka: bash scripts/infra.sh up');
      await reachable('127.0.0.1', 6379, 'Redis: bash scripts/infra.sh up');
      const db = `relay_peers_${run}`;
      const conn = await createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
      await conn.query(`CREATE DATABASE IF NOT EXISTS \`${db}\` CHARACTER SET utf8mb4`);
      await conn.end();
      const engine = {
        ENGINE: 'production',
        KAFKA_TOPIC: `relay-peers-${run}`,
        KAFKA_GROUP_ID: `relay-peers-${run}`,
        REDIS_KEY_PREFIX: `relay-peers-${run}:`,
        MYSQL_URL: `mysql://root@127.0.0.1:3306/${db}`,
      };
      // The first one creates the topic and runs the migrations; the second then boots as a replica does.
      const first = await startRelay(engine);
      return [first, await startRelay(engine)];
    },
    // Left behind, each run's outbox (~80 MB) piled up in MariaDB's buffer pool and made the next
    // runs' inserts costlier.
    cleanup: async (run) => {
      const conn = await createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
      await conn.query(`DROP DATABASE IF EXISTS \`relay_peers_${run}\``).finally(() => conn.end());
      const admin = new Kafka({
        clientId: `peers-${run}`,
        brokers: ['127.0.0.1:19092'],
        logLevel: logLevel.NOTHING,
      }).admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [`relay-peers-${run}`] }).catch(() => undefined);
      await admin.deleteGroups([`relay-peers-${run}`]).catch(() => undefined);
      await admin.disconnect();
      await dropKeys(`relay-peers-${run}:`);
    },
  },
  { name: 'ws', dialect: 'ws', processes: 1, start: async () => [await startPeer('ws-relay.server.js', {})] },
  {
    name: 'socketio',
    dialect: 'socketio',
    processes: 1,
    start: async () => [await startPeer('socketio.server.js', {})],
  },
  {
    name: 'socketio-redis',
    dialect: 'socketio',
    processes: 2,
    start: async (run) => {
      await reachable('127.0.0.1', 6379, 'Redis: bash scripts/infra.sh up');
      const redis = { PEER_REDIS_URL: 'redis://127.0.0.1:6379', PEER_REDIS_KEY: `peers-${run}` };
      return Promise.all([startPeer('socketio.server.js', redis), startPeer('socketio.server.js', redis)]);
    },
    cleanup: (run) => dropKeys(`peers-${run}`),
  },
];

/** The backends' processes on this machine, when they run here (MariaDB :3306, Redis :6379, scripts/infra.sh's Kafka). */
type Backends = { mariadb?: number; kafka?: number; redis?: number };

async function backendPids(): Promise<Backends> {
  const out: Backends = {};
  const mysql = await createConnection({ host: '127.0.0.1', port: 3306, user: 'root' }).catch(() => null);
  if (mysql) {
    const [rows] = (await mysql.query('SELECT @@pid_file AS f')) as unknown as [{ f: string }[]];
    out.mariadb = Number(readFileSync(rows[0].f, 'utf8').trim()) || undefined;
    await mysql.end();
  }
  const redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await redis.connect();
    out.redis = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]) || undefined;
  } catch {
    // not running here
  } finally {
    redis.disconnect();
  }
  const infra = process.env.RELAY_INFRA_DIR ?? join(homedir(), '.cache/relay-infra');
  try {
    out.kafka = Number(readFileSync(join(infra, 'kafka/kafka.pid'), 'utf8').trim()) || undefined;
  } catch {
    // not running here
  }
  for (const k of Object.keys(out) as (keyof Backends)[]) {
    try {
      cpuMs(out[k]!);
    } catch {
      delete out[k]; // stale pid file
    }
  }
  return out;
}

function backendCpu(pids: Backends): Backends {
  const out: Backends = {};
  for (const k of Object.keys(pids) as (keyof Backends)[]) out[k] = cpuMs(pids[k]!);
  return out;
}

/** Deletes the keys under `prefix` on the local Redis (SCAN + DEL, bounded pages). */
async function dropKeys(prefix: string): Promise<void> {
  const redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Resident memory of a process, from /proc. */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function ask<T>(child: ChildProcess, message: unknown, ms: number): Promise<T> {
  return new Promise<T>((ok, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`no answer to ${JSON.stringify(message)} in ${ms} ms`)),
      ms,
    );
    child.once('message', (m: { ok?: boolean; result?: T; error?: string; heap?: number }) => {
      clearTimeout(timer);
      if (m.ok === false) fail(new Error(m.error));
      else ok((m.result ?? m) as T);
    });
    child.send(message as object);
  });
}

async function heapUsed(servers: Server[]): Promise<number> {
  let sum = 0;
  for (const s of servers) sum += (await ask<{ heap: number }>(s.child, 'heap', 30_000)).heap;
  return sum;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await gone;
  clearTimeout(timer);
}

interface Row {
  target: string;
  bootMs: number;
  idleHeapPerConnKB: number;
  throughput: ThroughputResult;
  deliveriesPerSec: number;
  messagesPerSec: number;
  cpuUsPerDelivery: number;
  /** CPU of each backend process per delivery during the throughput run (us), whoever caused it. */
  backendUsPerDelivery: Backends;
  /** CPU the load generator used during the throughput run, in cores (near 1: it, not the server, is the bound). */
  loadCpuShare: number;
  rssMiB: number;
  bigRoom: number[];
}

async function measure(target: Target, load: ChildProcess, run: string, backends: Backends): Promise<Row> {
  const servers = await target.start(run);
  try {
    const urls = servers.map((s) => s.url);
    const cmd = (c: Command, ms = SHAPE.timeoutMs + 60_000) => ask<unknown>(load, c, ms);

    const heap0 = await heapUsed(servers);
    await cmd({ cmd: 'idle', dialect: target.dialect, urls, count: SHAPE.idle, run: `${run}i` });
    const heap1 = await heapUsed(servers);
    await cmd({ cmd: 'close-all' });

    await cmd({
      cmd: 'setup-rooms',
      dialect: target.dialect,
      urls,
      conversations: SHAPE.conversations,
      members: SHAPE.members,
      run: `${run}t`,
    });
    const cpu0 = servers.reduce((s, x) => s + cpuMs(x.child.pid!), 0);
    const loadCpu0 = cpuMs(load.pid!);
    const backend0 = backendCpu(backends);
    const tp = (await cmd({
      cmd: 'throughput',
      perSender: SHAPE.perSender,
      window: SHAPE.window,
      payloadBytes: SHAPE.payloadBytes,
      timeoutMs: SHAPE.timeoutMs,
    })) as ThroughputResult;
    const cpu1 = servers.reduce((s, x) => s + cpuMs(x.child.pid!), 0);
    const loadCpu1 = cpuMs(load.pid!);
    const backend1 = backendCpu(backends);
    const backendUsPerDelivery: Backends = {};
    for (const k of Object.keys(backend0) as (keyof Backends)[]) {
      backendUsPerDelivery[k] = ((backend1[k]! - backend0[k]!) * 1000) / Math.max(tp.delivered, 1);
    }
    const rss = servers.reduce((s, x) => s + rssMiB(x.child.pid!), 0);
    await cmd({ cmd: 'close-all' });

    await cmd({
      cmd: 'setup-rooms',
      dialect: target.dialect,
      urls,
      conversations: 1,
      members: SHAPE.bigRoom,
      run: `${run}b`,
    });
    const big = (await cmd({
      cmd: 'bigroom',
      messages: SHAPE.bigRoomMessages,
      payloadBytes: SHAPE.payloadBytes,
      timeoutMs: 30_000,
    })) as { lastDelivery: number[] };
    await cmd({ cmd: 'close-all' });

    return {
      target: target.name,
      bootMs: Math.max(...servers.map((s) => s.bootMs)),
      idleHeapPerConnKB: (heap1 - heap0) / SHAPE.idle / 1024,
      throughput: tp,
      deliveriesPerSec: (tp.delivered / tp.elapsedMs) * 1000,
      messagesPerSec: (tp.acked / tp.elapsedMs) * 1000,
      cpuUsPerDelivery: ((cpu1 - cpu0) * 1000) / Math.max(tp.delivered, 1),
      backendUsPerDelivery,
      loadCpuShare: (loadCpu1 - loadCpu0) / tp.elapsedMs,
      rssMiB: rss,
      bigRoom: big.lastDelivery,
    };
  } finally {
    for (const s of servers) await stop(s.child);
    await target.cleanup?.(run);
  }
}

const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : '-');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');

function table(rows: Row[]): string {
  const metrics: [string, (r: Row) => string][] = [
    ['boot -> ready (ms)', (r) => f0(r.bootMs)],
    ['idle heap / connection (KB)', (r) => f1(r.idleHeapPerConnKB)],
    ['delivered / expected', (r) => `${r.throughput.delivered}/${r.throughput.expected}`],
    ['throughput (deliveries/s)', (r) => f0(r.deliveriesPerSec)],
    ['throughput (messages/s)', (r) => f0(r.messagesPerSec)],
    ['ack p50 / p99 (ms)', (r) => `${f1(r.throughput.ack[0])} / ${f1(r.throughput.ack[1])}`],
    ['delivery p50 / p99 (ms)', (r) => `${f1(r.throughput.delivery[0])} / ${f1(r.throughput.delivery[1])}`],
    ['server CPU / delivery (us)', (r) => f1(r.cpuUsPerDelivery)],
    ['MariaDB CPU / delivery (us)', (r) => f1(r.backendUsPerDelivery.mariadb ?? NaN)],
    ['Kafka CPU / delivery (us)', (r) => f1(r.backendUsPerDelivery.kafka ?? NaN)],
    ['Redis CPU / delivery (us)', (r) => f1(r.backendUsPerDelivery.redis ?? NaN)],
    ['load generator CPU (cores)', (r) => r.loadCpuShare.toFixed(2)],
    ['server RSS at end (MiB)', (r) => f0(r.rssMiB)],
    [
      `big room ${SHAPE.bigRoom}: last delivery p50 / p99 (ms)`,
      (r) => `${f1(r.bigRoom[0])} / ${f1(r.bigRoom[1])}`,
    ],
  ];
  const head = ['metric', ...rows.map((r) => r.target)];
  const body = metrics.map(([name, get]) => [name, ...rows.map(get)]);
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((line) => line[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

function ratios(rows: Row[]): string {
  const by = new Map(rows.map((r) => [r.target, r]));
  const pairs: [string, string][] = [
    ['relay-embedded', 'ws'],
    ['relay-embedded', 'socketio'],
    ['relay-production', 'socketio-redis'],
    ['relay-production', 'ws'],
  ];
  const out: string[] = [];
  for (const [a, b] of pairs) {
    const x = by.get(a);
    const y = by.get(b);
    if (!x || !y) continue;
    const r = (p: number, q: number) => (Number.isFinite(p / q) ? `${(p / q).toFixed(2)}x` : '-');
    out.push(
      `${a} / ${b}: throughput ${r(x.deliveriesPerSec, y.deliveriesPerSec)}, ` +
        `ack p50 ${r(x.throughput.ack[0], y.throughput.ack[0])}, ` +
        `delivery p50 ${r(x.throughput.delivery[0], y.throughput.delivery[0])} p99 ${r(x.throughput.delivery[1], y.throughput.delivery[1])}, ` +
        `CPU/delivery ${r(x.cpuUsPerDelivery, y.cpuUsPerDelivery)}, RSS ${r(x.rssMiB, y.rssMiB)}, ` +
        `idle heap/conn ${r(x.idleHeapPerConnKB, y.idleHeapPerConnKB)} (${f1(x.idleHeapPerConnKB - y.idleHeapPerConnKB)} KB), ` +
        `big room p99 ${r(x.bigRoom[1], y.bigRoom[1])}`,
    );
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const wanted = (process.env.PEERS_TARGETS ?? TARGETS.map((t) => t.name).join(',')).split(',');
  const unknown = wanted.filter((w) => !TARGETS.some((t) => t.name === w));
  if (unknown.length) throw new Error(`unknown PEERS_TARGETS ${unknown.join(',')}`);
  const run = randomUUID().slice(0, 6);
  console.log(`shape: ${JSON.stringify(SHAPE)}; relay from ${RELAY_DIR}`);
  const load = fork(join(HERE, 'load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const backends = await backendPids();
  const rows: Row[] = [];
  try {
    for (const target of TARGETS.filter((t) => wanted.includes(t.name))) {
      console.log(`== ${target.name} (${target.processes} process${target.processes > 1 ? 'es' : ''})`);
      const row = await measure(target, load, `${run}${rows.length}`, backends);
      console.log(JSON.stringify(row));
      rows.push(row);
    }
  } finally {
    load.kill();
  }
  console.log(`\n${table(rows)}\n\n${ratios(rows)}`);
  if (process.env.PEERS_JSON)
    writeFileSync(process.env.PEERS_JSON, JSON.stringify({ shape: SHAPE, rows }, null, 2));
  if (rows.some((r) => r.throughput.delivered < r.throughput.expected)) process.exitCode = 1;
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
