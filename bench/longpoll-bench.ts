/**
 * Long polling vs WebSocket at low load, on the embedded engine (in-process: one clock for send and
 * receive times). A WebSocket client sends BENCH_MESSAGES messages at BENCH_RATE per second to a
 * conversation with a WebSocket receiver and a long-polling receiver (raw HTTP, as the SDK does it:
 * one GET held at a time, carrying the cursor); then a long-polling sender POSTs the same number to
 * a WebSocket receiver. Prints delivery latency p50/p99 per transport and HTTP requests per message.
 *
 *   npm run bench:longpoll
 *   BENCH_ENGINE=production npm run bench:longpoll   # Kafka, Redis, MariaDB on their default local ports
 */
import { randomBytes } from 'node:crypto';
import { createConnection } from 'mysql2/promise';
import WebSocket from 'ws';
import { startApp } from '../src/bootstrap';
import { loadConfig } from '../src/config/app-config';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 400);
const RATE = Number(process.env.BENCH_RATE ?? 20);
const PRODUCTION = process.env.BENCH_ENGINE === 'production';

/** On the production engines: a topic, group, key prefix and database of its own (dropped after). */
async function engineEnv(): Promise<{ env: Record<string, string>; drop: () => Promise<void> }> {
  if (!PRODUCTION) return { env: {}, drop: async () => undefined };
  const name = `bench_lp_${randomBytes(4).toString('hex')}`;
  const admin = () => createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
  const db = await admin();
  await db.query(`CREATE DATABASE \`${name}\``);
  await db.end();
  return {
    env: {
      ENGINE: 'production',
      KAFKA_TOPIC: name,
      KAFKA_GROUP_ID: name,
      REDIS_KEY_PREFIX: `${name}:`,
      MYSQL_URL: `mysql://root@127.0.0.1:3306/${name}`,
    },
    drop: async () => {
      const c = await admin();
      await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await c.end();
    },
  };
}

interface Frame {
  type: string;
  msg_id?: string;
  payload?: { body?: { i: number; at: number }; cursor?: string };
}

const now = () => performance.now();

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(latencies: number[]): string {
  const s = [...latencies].sort((a, b) => a - b);
  return `p50 ${percentile(s, 50).toFixed(2)} ms, p99 ${percentile(s, 99).toFixed(2)} ms, max ${s[s.length - 1].toFixed(2)} ms (n=${s.length})`;
}

/** A WebSocket client that has said hello; `onFrame` sees every frame after welcome. */
async function wsClient(url: string, onFrame: (f: Frame) => void): Promise<WebSocket> {
  const ws = new WebSocket(url);
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  const welcomed = new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as Frame;
      if (f.type === 'welcome') resolve();
      else onFrame(f);
    });
  });
  ws.send(JSON.stringify({ type: 'hello', payload: {} }));
  await welcomed;
  return ws;
}

/** A long-polling session: one GET at a time; counts requests. */
class Poller {
  requests = 0;
  private stopped = false;
  private sid = '';
  private cursor = '';

  constructor(
    private readonly base: string,
    private readonly user: string,
    private readonly onFrame: (f: Frame) => void,
  ) {}

  async open(): Promise<void> {
    this.requests++;
    const res = await fetch(`${this.base}/v1/poll/open?user_id=${this.user}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    const { sid, frames } = (await res.json()) as { sid: string; frames: Frame[] };
    this.sid = sid;
    this.cursor = frames[0].payload!.cursor!;
  }

  run(): Promise<void> {
    return (async () => {
      while (!this.stopped) {
        this.requests++;
        const res = await fetch(
          `${this.base}/v1/poll/${encodeURIComponent(this.sid)}?cursor=${encodeURIComponent(this.cursor)}&user_id=${this.user}`,
        );
        const frames = (await res.json()) as Frame[];
        if (res.status !== 200) throw new Error(`poll answered ${res.status}: ${JSON.stringify(frames)}`);
        for (const f of frames) {
          if (f.type === 'message') this.cursor = f.msg_id!;
          this.onFrame(f);
        }
      }
    })();
  }

  async post(frames: unknown[]): Promise<Frame[]> {
    this.requests++;
    const res = await fetch(
      `${this.base}/v1/poll/${encodeURIComponent(this.sid)}?cursor=${encodeURIComponent(this.cursor)}&user_id=${this.user}`,
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(frames) },
    );
    return (await res.json()) as Frame[];
  }

  stop(): void {
    this.stopped = true;
  }
}

async function main(): Promise<void> {
  const engine = await engineEnv();
  const app = await startApp(
    loadConfig({
      ...engine.env,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'error',
      POLL_TIMEOUT_MS: '25000',
      DEBUG_CONSOLE: 'false',
      SEND_RATE_PER_SEC: '1000',
    }),
  );
  const { port } = app.getHttpServer().address() as { port: number };
  const http = `http://127.0.0.1:${port}`;
  const ws = `ws://127.0.0.1:${port}/ws`;
  await fetch(`${http}/v1/conversations/bench`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ members: ['sender', 'ws-rx', 'lp-rx', 'lp-tx'] }),
  });

  const wsLatency: number[] = [];
  const lpLatency: number[] = [];
  const lpTxLatency: number[] = [];
  let phase: 'ws-send' | 'lp-send' = 'ws-send';
  const onWs = (f: Frame) => {
    if (f.type !== 'message' || !f.payload?.body) return;
    (phase === 'ws-send' ? wsLatency : lpTxLatency).push(now() - f.payload.body.at);
  };
  const receiver = await wsClient(`${ws}?user_id=ws-rx`, onWs);
  const poller = new Poller(http, 'lp-rx', (f) => {
    if (f.type === 'message' && f.payload?.body && phase === 'ws-send')
      lpLatency.push(now() - f.payload.body.at);
  });
  await poller.open();
  const polling = poller.run().catch(() => undefined); // ends with 503 when the app closes
  const sender = await wsClient(`${ws}?user_id=sender`, () => undefined);

  // Phase 1: WebSocket sender -> WebSocket and long-polling receivers.
  const pollsBefore = poller.requests;
  for (let i = 0; i < MESSAGES; i++) {
    sender.send(
      JSON.stringify({
        type: 'send',
        msg_id: `s${i}`,
        payload: { conversation_id: 'bench', body: { i, at: now() } },
      }),
    );
    await new Promise((r) => setTimeout(r, 1000 / RATE));
  }
  const deadline = Date.now() + 30_000;
  while ((wsLatency.length < MESSAGES || lpLatency.length < MESSAGES) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const pollsUsed = poller.requests - pollsBefore;

  // Phase 2: long-polling sender (POST per message) -> WebSocket receiver.
  phase = 'lp-send';
  const tx = new Poller(http, 'lp-tx', () => undefined);
  await tx.open();
  const txPolling = tx.run().catch(() => undefined);
  const txBefore = tx.requests;
  let acks = 0;
  for (let i = 0; i < MESSAGES; i++) {
    const answer = await tx.post([
      { type: 'send', msg_id: `t${i}`, payload: { conversation_id: 'bench', body: { i, at: now() } } },
    ]);
    acks += answer.filter((f) => f.type === 'ack').length;
    await new Promise((r) => setTimeout(r, 1000 / RATE));
  }
  const deadline2 = Date.now() + 30_000;
  while (lpTxLatency.length < MESSAGES && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 20));
  // The sender's own GETs also bring its messages back (members get their own messages).
  const txRequests = tx.requests - txBefore;

  console.log(
    `long polling vs WebSocket, ${PRODUCTION ? 'production (Kafka/Redis/MariaDB)' : 'embedded'} engine, ${MESSAGES} messages at ${RATE}/s (low load)`,
  );
  console.log(`  delivery WebSocket      : ${summary(wsLatency)}`);
  console.log(`  delivery long polling   : ${summary(lpLatency)}`);
  console.log(
    `  receiver HTTP requests  : ${pollsUsed} GETs for ${lpLatency.length} messages = ${(pollsUsed / lpLatency.length).toFixed(2)} per delivered message`,
  );
  console.log(
    `  long-polling sender     : ${summary(lpTxLatency)} to a WebSocket receiver; ${acks}/${MESSAGES} acks in the POST answers`,
  );
  console.log(
    `  sender HTTP requests    : ${txRequests} (POST + GET) for ${MESSAGES} sent messages = ${(txRequests / MESSAGES).toFixed(2)} per message`,
  );

  poller.stop();
  tx.stop();
  receiver.close();
  sender.close();
  await app.close(); // answers the held polls (503), which ends the loops
  await Promise.allSettled([polling, txPolling]);
  await engine.drop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
