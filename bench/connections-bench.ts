/**
 * Memory per connection and leak check under churn, on the embedded engine (in-process, so the heap
 * figures include the server's state only after the clients are gone). Bounded: BENCH_CONNECTIONS
 * sockets, BENCH_ROUNDS connect/disconnect rounds. Run with --expose-gc for exact heap figures:
 *
 *   npm run bench:connections
 */
import WebSocket from 'ws';
import { startApp } from '../src/bootstrap';
import { loadConfig } from '../src/config/app-config';
import { ConnectionRegistry } from '../src/gateway/connection.registry';

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

const mib = (n: number) => (n / 2 ** 20).toFixed(1);
const gc = () => (globalThis as { gc?: () => void }).gc?.();

async function settle(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage().heapUsed;
}

async function main(): Promise<void> {
  const app = await startApp(
    loadConfig({
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'error',
      HEARTBEAT_MS: '60000',
      // Every bench client comes from 127.0.0.1: lift the per-address caps (not what is measured here).
      MAX_CONNECTIONS_PER_IP: String(CONNECTIONS * 2),
      CONNECT_BURST_PER_IP: String(CONNECTIONS * 2),
      CONNECT_RATE_PER_IP: String(CONNECTIONS * 2),
      PREHELLO_SOFT_LIMIT: String(CONNECTIONS * 2),
    }),
  );
  const { port } = app.getHttpServer().address() as { port: number };
  const registry = app.get(ConnectionRegistry);
  await fetch(`http://127.0.0.1:${port}/v1/conversations/room`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ members: Array.from({ length: CONNECTIONS }, (_, i) => `u${i}`) }),
  });
  const baseline = await settle();
  console.log(
    `baseline heap ${mib(baseline)} MiB (gc ${typeof (globalThis as { gc?: unknown }).gc === 'function' ? 'exposed' : 'NOT exposed: run with --expose-gc'})`,
  );
  for (let round = 1; round <= ROUNDS; round++) {
    const sockets: WebSocket[] = [];
    let welcomed = 0;
    let got = 0;
    await Promise.all(
      Array.from(
        { length: CONNECTIONS },
        (_, i) =>
          new Promise<void>((resolve, reject) => {
            const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?user_id=u${i}`);
            ws.on('open', () => ws.send('{"type":"hello","payload":{}}'));
            ws.on('message', (d) => {
              const type = JSON.parse(d.toString()).type;
              if (type === 'message') got++;
              if (type === 'welcome') {
                welcomed++;
                resolve();
              }
            });
            ws.on('error', reject);
            sockets.push(ws);
          }),
      ),
    );
    // One message to everyone, so each connection has delivered something and holds a cursor.
    sockets[0].send(
      JSON.stringify({
        type: 'send',
        msg_id: `r${round}`,
        payload: { conversation_id: 'room', body: round },
      }),
    );
    // Each fresh device is owed every retained message: `round` per connection.
    const deadline = Date.now() + 30_000;
    while (got < CONNECTIONS * round && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const open = await settle();
    await Promise.all(sockets.map((ws) => new Promise((r) => (ws.once('close', r), ws.close()))));
    const deadline2 = Date.now() + 10_000;
    while (registry.size > 0 && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 10));
    const closed = await settle();
    console.log(
      `round ${round}: ${welcomed} connections, ${got} messages received (replays included); heap open ${mib(open)} MiB ` +
        `= ${((open - baseline) / CONNECTIONS / 1024).toFixed(1)} KiB/connection (client sockets included); ` +
        `after close ${mib(closed)} MiB (${closed >= baseline ? '+' : ''}${mib(closed - baseline)} vs baseline), registry ${registry.size}`,
    );
  }
  await app.close();
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
