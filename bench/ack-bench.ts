/**
 * `npm run bench:ack`: relay's ack latency at low load against its floor, a bare kafkajs acks=all
 * produce to the same broker. One sender, one message at a time (nothing else in flight), so the
 * figure is the per-send cost of the gateway: checks, dedupe, serialisation, the produce itself.
 *
 * Prints boot -> ready of the gateway (production engine), then ack p50/p99 of relay and of the bare
 * produce, measured interleaved in rounds (so a noisy neighbour hits both), and their ratio.
 *
 *   npm run bench:ack                 # Kafka 127.0.0.1:19092, Redis :6379, MariaDB :3306 up
 *   ACK_N=500 ACK_ROUNDS=3 ACK_RELAY_DIR=/other/checkout npm run bench:ack
 *   ACK_APP_ROLES=gateway npm run bench:ack   # ingress alone: no router consuming on the same process
 */
import { ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join, resolve } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { createConnection } from 'mysql2/promise';
import WebSocket from 'ws';
import { benchRelayEnv } from './peers/relay-env';
import { freePort, until } from './bench-process';

const N = Number(process.env.ACK_N ?? 300);
const ROUNDS = Number(process.env.ACK_ROUNDS ?? 3);
const BROKER = process.env.ACK_BROKER ?? '127.0.0.1:19092';
const RELAY_DIR = resolve(process.env.ACK_RELAY_DIR ?? join(__dirname, '../..'));
/** `gateway` alone measures ingress only (no router on the same cores); acks need no router. */
const ROLES = process.env.ACK_APP_ROLES ?? 'gateway,router';
const BODY = { text: 'x'.repeat(100) };

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function startGateway(run: string): Promise<{ child: ChildProcess; port: number; bootMs: number }> {
  const db = `relay_ack_${run}`;
  const conn = await createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
  await conn.query(`CREATE DATABASE IF NOT EXISTS \`${db}\` CHARACTER SET utf8mb4`);
  await conn.end();
  const port = await freePort();
  const t0 = performance.now();
  const child = fork(join(RELAY_DIR, 'dist/main.js'), [], {
    cwd: RELAY_DIR,
    env: {
      ...process.env,
      ...benchRelayEnv(port),
      ENGINE: 'production',
      APP_ROLES: ROLES,
      KAFKA_BROKERS: BROKER,
      KAFKA_TOPIC: `relay-ack-${run}`,
      KAFKA_GROUP_ID: `relay-ack-${run}`,
      REDIS_KEY_PREFIX: `relay-ack-${run}:`,
      MYSQL_URL: `mysql://root@127.0.0.1:3306/${db}`,
    },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const exited = new Promise<never>((_, fail) =>
    child.once('exit', (c, s) => fail(new Error(`gateway exited (${c ?? s})`))),
  );
  await Promise.race([
    until('gateway ready', 60_000, async () => (await fetch(`http://127.0.0.1:${port}/health/ready`)).ok),
    exited,
  ]);
  return { child, port, bootMs: performance.now() - t0 };
}

async function main(): Promise<void> {
  const run = randomUUID().slice(0, 8);
  const kafka = new Kafka({ clientId: `ack-bench-${run}`, brokers: [BROKER], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `relay-ack-bare-${run}`;
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    idempotent: false,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  const value = JSON.stringify({
    id: randomUUID(),
    conversation_id: 'c1',
    from: 'alice',
    body: BODY,
    ts: Date.now(),
  });
  const bare: number[] = [];
  const relay: number[] = [];
  const gw = await startGateway(run);
  try {
    const conversation = `ack-${run}`;
    const sendTimes = await relaySenderTimes(gw.port, conversation);
    await sendTimes(50); // warm-up: JIT, connections, caches
    for (let i = 0; i < 50; i++) await producer.send({ topic, acks: -1, messages: [{ key: 'c1', value }] });
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        await producer.send({ topic, acks: -1, messages: [{ key: 'c1', value }] });
        bare.push(performance.now() - t0);
      }
      relay.push(...(await sendTimes(N)));
    }
  } finally {
    // Leave nothing behind: the node's topic and database, the bare topic (Redis keys expire).
    if (gw.child.exitCode === null && gw.child.signalCode === null) {
      const exited = new Promise((r) => gw.child.once('exit', r));
      gw.child.kill('SIGTERM');
      await exited;
    }
    await producer.disconnect();
    await admin.deleteTopics({ topics: [topic, `relay-ack-${run}`] }).catch(() => undefined);
    await admin.disconnect();
    const conn = await createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
    await conn.query(`DROP DATABASE IF EXISTS \`relay_ack_${run}\``).finally(() => conn.end());
  }
  const row = (name: string, xs: number[]) =>
    `${name.padEnd(28)} ${pct(xs, 50).toFixed(2).padStart(8)} ${pct(xs, 99).toFixed(2).padStart(8)}`;
  console.log(`relay node (APP_ROLES=${ROLES}) boot -> ready: ${gw.bootMs.toFixed(0)} ms`);
  console.log(`${'ack latency (ms)'.padEnd(28)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`);
  console.log(row('bare kafkajs acks=all', bare));
  console.log(row('relay send -> ack', relay));
  console.log(
    `ratio relay / bare: p50 ${(pct(relay, 50) / pct(bare, 50)).toFixed(2)}x, p99 ${(pct(relay, 99) / pct(bare, 99)).toFixed(2)}x`,
  );
}

/** Like relaySender, but returns every send's ack time. */
async function relaySenderTimes(
  port: number,
  conversation: string,
): Promise<(n: number) => Promise<number[]>> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/conversations/${conversation}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ members: ['alice', 'bob'] }),
  });
  if (!res.ok) throw new Error(`PUT conversation: ${res.status} ${await res.text()}`);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?user_id=alice`);
  let waiting: ((ref: string) => void) | undefined;
  let failed: ((e: Error) => void) | undefined;
  await new Promise<void>((ok, fail) => {
    ws.once('error', fail);
    ws.once('open', () => ws.send(JSON.stringify({ type: 'hello', payload: {} })));
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as { type: string; payload: { ref?: string; code?: string } };
      if (f.type === 'welcome') ok();
      else if (f.type === 'ack') waiting?.(f.payload.ref!);
      else if (f.type === 'error') {
        const e = new Error(`relay error ${f.payload.code}`);
        fail(e);
        failed?.(e);
      }
    });
  });
  let seq = 0;
  return async (n) => {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const ref = `r${++seq}`;
      const t0 = performance.now();
      await new Promise<void>((ok, fail) => {
        waiting = (r) => r === ref && ok();
        failed = fail;
        ws.send(
          JSON.stringify({
            type: 'send',
            msg_id: ref,
            payload: { conversation_id: conversation, body: BODY },
          }),
        );
      });
      times.push(performance.now() - t0);
    }
    return times;
  };
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
