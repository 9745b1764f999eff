/**
 * `npm run bench:recovery`: how long deliveries stall after faults, on a Kafka broker of its OWN (never
 * the shared one: it is restarted mid-stream).
 *
 * 1. Broker restart: one relay node (gateway + router) on the production engines; alice sends to bob
 *    every RECOVERY_SEND_MS; the broker is stopped for RECOVERY_DOWN_MS and started again
 *    (scripts/infra.sh down/up with RELAY_INFRA_DIR/KAFKA_PORT/KAFKA_CONTROLLER_PORT). Printed: from the
 *    broker answering metadata again to bob's first delivery after it, and the longest delivery gap.
 * 2. Router kill -9: two nodes, the clients on the first; the second is killed with SIGKILL. Printed:
 *    the longest delivery gap of RECOVERY_ROOMS conversations (spread over the partitions, so some
 *    belonged to the killed router until the group noticed: the consumer session timeout).
 *
 *   RELAY_INFRA_DIR=/tmp/recovery-kafka KAFKA_PORT=29192 KAFKA_CONTROLLER_PORT=29193 npm run bench:recovery
 *   (the broker is started by the bench when it is not up; MariaDB :3306 and Redis :6379 must be up)
 */
import { ChildProcess, execFile, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { createConnection } from 'mysql2/promise';
import WebSocket from 'ws';
import { freePort } from './bench-process';

const run = promisify(execFile);
const ROOT = resolve(join(__dirname, '../..'));
const INFRA_DIR = process.env.RELAY_INFRA_DIR;
const KAFKA_PORT = process.env.KAFKA_PORT ?? '';
const BROKER = `127.0.0.1:${KAFKA_PORT}`;
const SEND_MS = Number(process.env.RECOVERY_SEND_MS ?? 50);
const DOWN_MS = Number(process.env.RECOVERY_DOWN_MS ?? 3000);
const ROOMS = Number(process.env.RECOVERY_ROOMS ?? 8);

async function until(what: string, ms: number, ok: () => Promise<boolean>, stepMs = 20): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

function infra(cmd: 'up' | 'down'): Promise<unknown> {
  return run('bash', [join(ROOT, 'scripts/infra.sh'), cmd], {
    env: { ...process.env, KAFKA_HEAP_OPTS: process.env.KAFKA_HEAP_OPTS ?? '-Xms128m -Xmx256m' },
    maxBuffer: 1 << 24,
  });
}

/** True once the broker answers a metadata request (a fresh client each time: no cached connection). */
async function brokerAnswers(): Promise<boolean> {
  const admin = new Kafka({
    clientId: 'recovery-probe',
    brokers: [BROKER],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 500,
    requestTimeout: 1000,
    retry: { retries: 0 },
  }).admin();
  try {
    await admin.connect();
    await admin.fetchTopicMetadata({ topics: [] });
    return true;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

interface Node {
  child: ChildProcess;
  port: number;
}

async function startNode(tag: string): Promise<Node> {
  const db = `relay_recovery_${tag}`;
  const conn = await createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
  await conn.query(`CREATE DATABASE IF NOT EXISTS \`${db}\` CHARACTER SET utf8mb4`);
  await conn.end();
  const port = await freePort();
  const child = fork(join(ROOT, 'dist/main.js'), [], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_ENV: 'development',
      AUTH_MODE: 'dev',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: process.env.RECOVERY_LOG_LEVEL ?? 'error',
      DEBUG_CONSOLE: 'false',
      SEND_RATE_PER_SEC: '1000000',
      SEND_BURST: '1000000',
      ENGINE: 'production',
      KAFKA_BROKERS: BROKER,
      KAFKA_TOPIC: `relay-recovery-${tag}`,
      KAFKA_GROUP_ID: `relay-recovery-${tag}`,
      REDIS_KEY_PREFIX: `relay-recovery-${tag}:`,
      MYSQL_URL: `mysql://root@127.0.0.1:3306/${db}`,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await until(
    `node ${port} ready`,
    90_000,
    async () => (await fetch(`http://127.0.0.1:${port}/health/ready`)).ok,
  );
  return { child, port };
}

/** A client that sends with fresh refs (failed sends are not retried) and records delivery times. */
async function client(port: number, user: string, onMessage: (conversation: string) => void) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?user_id=${user}`);
  await new Promise<void>((ok, fail) => {
    ws.once('error', fail);
    ws.once('open', () => ws.send(JSON.stringify({ type: 'hello', payload: {} })));
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as { type: string; payload: { conversation_id?: string } };
      if (f.type === 'welcome') ok();
      else if (f.type === 'message') onMessage(f.payload.conversation_id!);
    });
  });
  let n = 0;
  return {
    send: (conversation: string) =>
      ws.send(
        JSON.stringify({
          type: 'send',
          msg_id: `m${++n}`,
          payload: { conversation_id: conversation, body: { t: Date.now() } },
        }),
      ),
    close: () => ws.terminate(),
  };
}

async function putRoom(port: number, id: string): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/conversations/${id}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ members: ['alice', 'bob'] }),
  });
  if (!res.ok) throw new Error(`PUT ${id}: ${res.status}`);
}

/** Longest gap between consecutive deliveries in [from, to], per conversation, the worst of them. */
function longestGap(times: Map<string, number[]>, from: number, to: number): number {
  let worst = 0;
  for (const ts of times.values()) {
    let prev = from;
    for (const t of ts) {
      if (t < from || t > to) continue;
      worst = Math.max(worst, t - prev);
      prev = t;
    }
    worst = Math.max(worst, to - prev);
  }
  return worst;
}

async function brokerRestart(tag: string): Promise<void> {
  const node = await startNode(tag);
  const got: number[] = [];
  const bob = await client(node.port, 'bob', () => got.push(Date.now()));
  const alice = await client(node.port, 'alice', () => undefined);
  const room = `r-${tag}`;
  await putRoom(node.port, room);
  const sender = setInterval(() => alice.send(room), SEND_MS);
  try {
    await until('first delivery', 30_000, async () => got.length > 0);
    await new Promise((r) => setTimeout(r, 2000)); // steady state
    const stoppedAt = Date.now();
    await infra('down');
    const down = Date.now();
    await new Promise((r) => setTimeout(r, DOWN_MS));
    await infra('up');
    await until('broker answers', 120_000, brokerAnswers, 50);
    const answeredAt = Date.now();
    await until('deliveries resume', 120_000, async () => got.some((t) => t > answeredAt), 10);
    const resumedAt = got.find((t) => t > answeredAt)!;
    await new Promise((r) => setTimeout(r, 3000));
    const lastBefore = [...got].reverse().find((t) => t <= stoppedAt) ?? stoppedAt;
    console.log(
      `broker restart: stop took ${down - stoppedAt} ms, down ${answeredAt - down} ms until it answered; ` +
        `deliveries resumed ${resumedAt - answeredAt} ms after the broker answered ` +
        `(delivery gap ${resumedAt - lastBefore} ms)`,
    );
  } finally {
    clearInterval(sender);
    alice.close();
    bob.close();
    node.child.kill('SIGTERM');
  }
}

async function routerKill(tag: string): Promise<void> {
  const a = await startNode(tag);
  const b = await startNode(tag);
  const times = new Map<string, number[]>();
  const rooms = Array.from({ length: ROOMS }, (_, i) => `k${i}-${tag}`);
  for (const r of rooms) {
    times.set(r, []);
    await putRoom(a.port, r);
  }
  const bob = await client(a.port, 'bob', (c) => times.get(c)?.push(Date.now()));
  const alice = await client(a.port, 'alice', () => undefined);
  let i = 0;
  const sender = setInterval(
    () => alice.send(rooms[i++ % rooms.length]),
    Math.max(5, SEND_MS / rooms.length),
  );
  try {
    await until('every room delivers', 60_000, async () => [...times.values()].every((t) => t.length > 0));
    await new Promise((r) => setTimeout(r, 2000));
    const killedAt = Date.now();
    b.child.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 20_000));
    console.log(
      `router kill -9: longest delivery gap over ${ROOMS} conversations ${longestGap(times, killedAt, Date.now())} ms`,
    );
  } finally {
    clearInterval(sender);
    alice.close();
    bob.close();
    a.child.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  if (!INFRA_DIR || !KAFKA_PORT || !process.env.KAFKA_CONTROLLER_PORT || KAFKA_PORT === '19092')
    throw new Error(
      'bench:recovery restarts its broker: set RELAY_INFRA_DIR, KAFKA_PORT and KAFKA_CONTROLLER_PORT to a broker of its own (not 19092)',
    );
  await infra('up');
  const tag = randomUUID().slice(0, 8);
  const which = (process.env.RECOVERY_CASES ?? 'restart,kill').split(',');
  if (which.includes('restart')) await brokerRestart(`${tag}a`);
  if (which.includes('kill')) await routerKill(`${tag}b`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
