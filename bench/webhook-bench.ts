/**
 * Webhook throughput and its effect on client delivery. Boots relay in-process (ENGINE from env:
 * embedded by default, ENGINE=production for Kafka + Redis + MySQL) with a local webhook receiver that
 * verifies every signature and answers 204, and runs the same WebSocket workload twice:
 *   1. webhook off: client delivery latency (send -> message at every member);
 *   2. webhook on: the same latency (a webhook must add nothing), and the webhook delay (event ts ->
 *      POST received) of the live stream;
 * then measures the webhook drain rate: a backlog of BENCH_BACKLOG events held while the endpoint
 * answers 503, then released (events/s through one endpoint).
 *
 *   npm run bench:webhooks                       # embedded engine
 *   ENGINE=production npm run bench:webhooks     # production engines
 */
import { randomUUID } from 'node:crypto';
import { ChildProcess, fork } from 'node:child_process';
import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { startApp } from '../src/bootstrap';
import { loadConfig } from '../src/config/app-config';
import { verifySignature } from '../src/webhooks/webhook-signature';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 3000);
const CONVERSATIONS = Number(process.env.BENCH_CONVERSATIONS ?? 20);
const MEMBERS = Number(process.env.BENCH_MEMBERS ?? 5);
/** Total sends per second, paced (0: as fast as acks allow, BENCH_WINDOW unacked per sender: saturation). */
const RATE = Number(process.env.BENCH_RATE ?? 500);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 20);
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 20_000);
const SECRET = 'bench-webhook-secret-0123456789abcdef';

const pct = (s: number[], p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
function summary(name: string, xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  return `${name}: p50 ${pct(s, 50).toFixed(2)} ms, p90 ${pct(s, 90).toFixed(2)} ms, p99 ${pct(s, 99).toFixed(2)} ms (n=${s.length})`;
}

/**
 * The endpoint, in a child process of its own (its CPU is not relay's): verifies every signature,
 * answers 204 (503 while failing) and reports each new message event (id, arrival, delay) over IPC.
 */
function runReceiverProcess(): void {
  const seen = new Set<string>();
  let failing = false;
  let bad = 0;
  // The bench died: so does its receiver.
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m: { failing?: boolean }) => {
    if (m.failing !== undefined) failing = m.failing;
  });
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (!verifySignature(SECRET, req.headers['relay-signature'] as string, body)) {
        bad++;
        process.send!({ bad });
        return res.writeHead(400).end();
      }
      if (failing) return res.writeHead(503).end();
      const now = Date.now();
      const fresh: [string, number][] = [];
      for (const e of (JSON.parse(body) as { events: { id: string; ts: number; kind: string }[] }).events) {
        if (e.kind !== 'message' || seen.has(e.id)) continue;
        seen.add(e.id);
        fresh.push([e.id, now - e.ts]);
      }
      res.writeHead(204).end();
      if (fresh.length > 0) process.send!({ fresh });
    });
  });
  server.listen(0, '127.0.0.1', () =>
    process.send!({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` }),
  );
}

/** The parent's view of the receiver process. */
class Receiver {
  readonly arrivals = new Map<string, number>();
  readonly delays: number[] = [];
  bad = 0;
  url = '';
  private child!: ChildProcess;
  async start(): Promise<void> {
    this.child = fork(__filename, ['receiver']);
    this.child.on('message', (m: { url?: string; fresh?: [string, number][]; bad?: number }) => {
      if (m.bad !== undefined) this.bad = m.bad;
      const now = performance.now();
      for (const [id, delay] of m.fresh ?? []) {
        this.arrivals.set(id, now);
        this.delays.push(delay);
      }
    });
    this.url = await new Promise<string>((resolve) =>
      this.child.on('message', (m: { url?: string }) => m.url && resolve(m.url)),
    );
  }
  set failing(value: boolean) {
    this.child.send({ failing: value });
  }
  async close(): Promise<void> {
    this.child.kill();
  }
}

async function open(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'hello', payload: {} }));
  await new Promise<void>((resolve) =>
    ws.on('message', function onWelcome(d) {
      if ((JSON.parse(d.toString()) as { type: string }).type === 'welcome') {
        ws.off('message', onWelcome);
        resolve();
      }
    }),
  );
  return ws;
}

async function waitUntil(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function run(webhook: Receiver | null): Promise<{ deliveryLat: number[]; ids: string[] }> {
  const tag = randomUUID().slice(0, 6);
  const config = loadConfig({
    ...process.env,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'error',
    DEBUG_CONSOLE: 'false', // its page is not copied to dist-bench
    SEND_RATE_PER_SEC: '100000',
    SEND_BURST: '100000',
    KAFKA_TOPIC: `relay-whbench-${tag}`,
    KAFKA_GROUP_ID: `relay-whbench-${tag}`,
    REDIS_KEY_PREFIX: `relay-whbench-${tag}:`,
    ...(webhook ? { WEBHOOK_URLS: webhook.url, WEBHOOK_SECRET: SECRET, WEBHOOK_BACKOFF_MAX_MS: '200' } : {}),
  });
  const app = await startApp(config);
  const http = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  const sentAt = new Map<string, number>();
  const deliveryLat: number[] = [];
  const ids: string[] = [];
  let delivered = 0;
  const senders: WebSocket[] = [];
  const all: WebSocket[] = [];
  for (let c = 0; c < CONVERSATIONS; c++) {
    const members = Array.from({ length: MEMBERS }, (_, m) => `w${tag}-c${c}-u${m}`);
    await fetch(`${http}/v1/conversations/w${tag}-${c}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members }),
    });
    for (const [m, user] of members.entries()) {
      const ws = await open(`${http.replace('http', 'ws')}/ws?user_id=${user}`);
      ws.on('message', (d) => {
        const f = JSON.parse(d.toString()) as { type: string; payload: { id: string } };
        if (f.type !== 'message') return;
        const t0 = sentAt.get(f.payload.id);
        if (t0 !== undefined) deliveryLat.push(performance.now() - t0);
        delivered++;
      });
      all.push(ws);
      if (m === 0) senders.push(ws);
    }
  }
  const perSender = Math.ceil(MESSAGES / CONVERSATIONS);
  const cpu0 = process.cpuUsage();
  const refAt = new Map<string, number>();
  await Promise.all(
    senders.map(
      (ws, c) =>
        new Promise<void>((resolve, reject) => {
          let sent = 0;
          let acked = 0;
          const sendOne = () => {
            const ref = `${c}-${sent++}`;
            refAt.set(ref, performance.now());
            ws.send(
              JSON.stringify({
                type: 'send',
                msg_id: ref,
                payload: { conversation_id: `w${tag}-${c}`, body: { n: sent } },
              }),
            );
          };
          ws.on('message', (d) => {
            const f = JSON.parse(d.toString()) as {
              type: string;
              msg_id: string;
              payload: { ref: string; code?: string };
            };
            if (f.type === 'error') return reject(new Error(`send failed: ${f.payload.code}`));
            if (f.type !== 'ack') return;
            sentAt.set(f.msg_id, refAt.get(f.payload.ref)!);
            ids.push(f.msg_id);
            if (++acked === perSender) return resolve();
            if (RATE === 0 && sent < perSender) sendOne();
          });
          if (RATE > 0) {
            // Paced: each sender sends every CONVERSATIONS/RATE seconds, whatever the acks.
            const timer = setInterval(
              () => (sent < perSender ? sendOne() : clearInterval(timer)),
              (1000 * CONVERSATIONS) / RATE,
            );
          } else {
            for (let i = 0; i < Math.min(WINDOW, perSender); i++) sendOne();
          }
        }),
    ),
  );
  await waitUntil(() => delivered >= perSender * CONVERSATIONS * MEMBERS, 120_000, 'client deliveries');
  if (webhook)
    await waitUntil(() => ids.every((id) => webhook.arrivals.has(id)), 120_000, 'live webhook events');
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `relay process CPU for the live run, webhook ${webhook ? 'on' : 'off'}: ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms (bench clients included)`,
  );
  if (webhook) {
    // Drain rate: a backlog held by a failing endpoint, then released.
    webhook.failing = true;
    const backlog: string[] = [];
    const batch = 500;
    for (let i = 0; i < BACKLOG; i += batch) {
      const messages = Array.from({ length: Math.min(batch, BACKLOG - i) }, (_, k) => ({
        conversation_id: `w${tag}-${(i + k) % CONVERSATIONS}`,
        from: `w${tag}-c${(i + k) % CONVERSATIONS}-u0`,
        body: { n: i + k },
        ref: `bl-${i + k}`,
      }));
      const res = await fetch(`${http}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages }),
      });
      if (res.status !== 201) throw new Error(`batch publish answered ${res.status}: ${await res.text()}`);
      backlog.push(...((await res.json()) as { messages: { id: string }[] }).messages.map((m) => m.id));
    }
    // Let clients catch up with the backlog first, so the drain competes with nothing else.
    await waitUntil(
      () => delivered >= (perSender * CONVERSATIONS + BACKLOG) * MEMBERS,
      300_000,
      'backlog at clients',
    );
    const t0 = performance.now();
    webhook.failing = false;
    await waitUntil(
      () => backlog.every((id) => webhook.arrivals.has(id)),
      300_000,
      'webhook backlog drained',
    );
    const ms = performance.now() - t0;
    console.log(
      `webhook drain: ${BACKLOG} events in ${ms.toFixed(0)} ms = ${((BACKLOG / ms) * 1000).toFixed(0)} events/s (one endpoint, WEBHOOK_BATCH_MAX=${config.webhooks.batchMax}, ${config.kafka.partitions} partitions; bad signatures: ${webhook.bad})`,
    );
  }
  for (const ws of all) ws.terminate();
  await app.close();
  return { deliveryLat, ids };
}

async function main(): Promise<void> {
  console.log(
    `engine: ${process.env.ENGINE ?? 'embedded'}; ${MESSAGES} WebSocket sends in ${CONVERSATIONS} conversations of ${MEMBERS}, ${RATE > 0 ? `paced at ${RATE}/s` : `as fast as acked, window ${WINDOW}/sender`}`,
  );
  const off = await run(null);
  console.log(summary('client delivery latency, webhook off', off.deliveryLat));
  const receiver = new Receiver();
  await receiver.start();
  const liveDelays = receiver.delays;
  const on = await run(receiver);
  console.log(summary('client delivery latency, webhook on ', on.deliveryLat));
  console.log(
    summary('webhook delay (event ts -> POST received), live traffic', liveDelays.slice(0, on.ids.length)),
  );
  await receiver.close();
}

if (process.argv[2] === 'receiver') {
  runReceiverProcess();
} else {
  main().catch((err: Error) => {
    console.error(err.message);
    process.exit(1);
  });
}
