/**
 * End-to-end latency and throughput of the real path: WebSocket send -> ack, and send -> message at
 * every recipient. Boots the app in-process on the engines chosen by env (default embedded; set
 * ENGINE=production for Kafka + Redis + MySQL after `bash scripts/infra.sh up`), or targets a running
 * server with BENCH_URL (ws://host:port/ws, dev auth). Bounded: stops after BENCH_MESSAGES.
 *
 *   npm run bench                       # embedded engine
 *   ENGINE=production npm run bench     # production engines
 *   BENCH_RECEIPTS=1 npm run bench      # v1.1: every receiver confirms and marks read (every 100 ms)
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { startApp } from '../src/bootstrap';
import { loadConfig } from '../src/config/app-config';
import { MetricsService } from '../src/metrics/metrics.service';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 5000);
const CONVERSATIONS = Number(process.env.BENCH_CONVERSATIONS ?? 20);
const MEMBERS = Number(process.env.BENCH_MEMBERS ?? 5);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 50); // unacked sends in flight per sender
/** v1.1 receipts on: receivers confirm their latest cursor and send `read` for the latest seq, like the SDK. */
const RECEIPTS = process.env.BENCH_RECEIPTS === '1';
const RECEIPT_INTERVAL_MS = 100;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(name: string, xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  return `${name}: p50 ${pct(s, 50).toFixed(2)} ms, p90 ${pct(s, 90).toFixed(2)} ms, p99 ${pct(s, 99).toFixed(2)} ms, max ${s[s.length - 1].toFixed(2)} ms`;
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
      if (JSON.parse(d.toString()).type === 'welcome') {
        ws.off('message', onWelcome);
        resolve();
      }
    }),
  );
  return ws;
}

async function main(): Promise<void> {
  const run = randomUUID().slice(0, 6);
  let wsBase = process.env.BENCH_URL;
  let httpBase = wsBase?.replace(/^ws/, 'http').replace(/\/ws$/, '');
  let close = async () => {};
  let routerStats = async () => '';
  if (!wsBase) {
    const config = loadConfig({
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'warn',
      SEND_RATE_PER_SEC: '100000',
      SEND_BURST: '100000',
      KAFKA_TOPIC: process.env.KAFKA_TOPIC ?? `relay-bench-${run}`,
      REDIS_KEY_PREFIX: `relay-bench-${run}:`,
    });
    const app = await startApp(config);
    const { port } = app.getHttpServer().address() as { port: number };
    wsBase = `ws://127.0.0.1:${port}/ws`;
    httpBase = `http://127.0.0.1:${port}`;
    close = () => app.close();
    routerStats = async () => {
      const h = (await app.get(MetricsService).routedBatches.get()).values;
      const count = h.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
      const sum = h.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
      return `router: ${count} bus batches, mean ${((sum / Math.max(count, 1)) * 1000).toFixed(1)} ms each (outbox write + push)`;
    };
    console.log(`engines: ${JSON.stringify(config.engines)}`);
  }

  const sentAt = new Map<string, number>(); // message id -> send time
  const refSentAt = new Map<string, number>();
  const ackLat: number[] = [];
  const deliveryLat: number[] = [];
  let delivered = 0;
  const expectedDeliveries = MESSAGES * MEMBERS;

  const senders: WebSocket[] = [];
  const receivers: WebSocket[] = [];
  const timers: NodeJS.Timeout[] = [];
  let receiptsIn = 0;
  for (let c = 0; c < CONVERSATIONS; c++) {
    const members = Array.from({ length: MEMBERS }, (_, m) => `b${run}-c${c}-u${m}`);
    await fetch(`${httpBase}/v1/conversations/b${run}-${c}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members }),
    });
    for (const [m, user] of members.entries()) {
      const ws = await open(`${wsBase}?user_id=${user}`);
      let cursor = '';
      let seq = 0;
      let told = '';
      ws.on('message', (d) => {
        const f = JSON.parse(d.toString()) as {
          type: string;
          msg_id: string;
          payload: { id: string; ts: number; seq?: number };
        };
        if (f.type === 'receipt') receiptsIn++;
        if (f.type === 'receipt' || f.type === 'message') cursor = f.msg_id;
        if (f.type !== 'message') return;
        seq = Math.max(seq, f.payload.seq ?? 0);
        const t0 = sentAt.get(f.payload.id);
        if (t0 !== undefined) deliveryLat.push(performance.now() - t0);
        delivered++;
      });
      if (RECEIPTS && m > 0) {
        const conversation = `b${run}-${c}`;
        timers.push(
          setInterval(() => {
            if (cursor === told || ws.readyState !== WebSocket.OPEN) return;
            told = cursor;
            ws.send(JSON.stringify({ type: 'confirm', msg_id: cursor }));
            ws.send(JSON.stringify({ type: 'read', payload: { conversation_id: conversation, seq } }));
          }, RECEIPT_INTERVAL_MS),
        );
      }
      (m === 0 ? senders : receivers).push(ws);
    }
  }

  const perSender = Math.ceil(MESSAGES / CONVERSATIONS);
  const started = performance.now();
  await Promise.all(
    senders.map(
      (ws, c) =>
        new Promise<void>((resolve, reject) => {
          let sent = 0;
          let acked = 0;
          const sendOne = () => {
            const ref = `${c}-${sent++}`;
            refSentAt.set(`${c}/${ref}`, performance.now());
            ws.send(
              JSON.stringify({
                type: 'send',
                msg_id: ref,
                payload: { conversation_id: `b${run}-${c}`, body: { n: sent } },
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
            const t0 = refSentAt.get(`${c}/${f.payload.ref}`)!;
            sentAt.set(f.msg_id, t0);
            ackLat.push(performance.now() - t0);
            if (++acked === perSender) return resolve();
            if (sent < perSender) sendOne();
          });
          for (let i = 0; i < Math.min(WINDOW, perSender); i++) sendOne();
        }),
    ),
  );
  const ackedAt = performance.now();
  const total = perSender * CONVERSATIONS;
  const deadline = Date.now() + 60_000;
  while (delivered < total * MEMBERS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const doneAt = performance.now();

  for (const t of timers) clearInterval(t);
  console.log(
    `messages: ${total} in ${CONVERSATIONS} conversations of ${MEMBERS} members, window ${WINDOW}/sender, receipts ${RECEIPTS ? `on (confirm + read every ${RECEIPT_INTERVAL_MS} ms per receiver; ${receiptsIn} receipt frames received)` : 'off'}`,
  );
  console.log(
    `acked: ${total} in ${(ackedAt - started).toFixed(0)} ms = ${((total / (ackedAt - started)) * 1000).toFixed(0)} msg/s`,
  );
  console.log(
    `delivered: ${delivered}/${expectedDeliveries} deliveries in ${(doneAt - started).toFixed(0)} ms = ${((delivered / (doneAt - started)) * 1000).toFixed(0)} deliveries/s`,
  );
  console.log(summary('ack latency (send -> ack)', ackLat));
  console.log(summary('delivery latency (send -> message at recipient)', deliveryLat));
  console.log(await routerStats());
  console.log(`rss: ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
  for (const ws of [...senders, ...receivers]) ws.terminate();
  await close();
  if (delivered < total * MEMBERS) process.exitCode = 1;
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
