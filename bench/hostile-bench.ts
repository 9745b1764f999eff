/**
 * Hostile clients against one relay process: how much a probe client's latency and the server's memory
 * move while single clients misbehave, and how each misbehaving client ends. The server runs as a child
 * process (`node dist/main.js`, embedded engine, default limits) so its RSS is its own; this process is
 * the probe and the attackers. Every phase is bounded in frames, connections and time.
 *
 *   npm run bench:hostile            (BENCH_PHASE_MS=3000 per phase)
 *
 * Figures, not assertions: the hostile e2e suite asserts the outcomes; this prints what they cost.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';

const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 3000);
const PROBE_INTERVAL_MS = 10;

interface Probe {
  rtts: number[];
  stop(): void;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** The child's resident set; 0 once it is gone. */
function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms`);
}

/** Opens a socket and completes hello; resolves once welcome arrived. */
function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => reject(new Error('welcome not received')), 10_000);
    ws.once('open', () => ws.send('{"type":"hello","payload":{}}'));
    ws.on('message', (d) => {
      if ((JSON.parse(d.toString()) as { type: string }).type === 'welcome') {
        clearTimeout(timer);
        resolve(ws);
      }
    });
    ws.once('error', reject);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

/** One ping frame in flight at a time, every PROBE_INTERVAL_MS; records each pong's round trip. */
function startProbe(ws: WebSocket): Probe {
  const rtts: number[] = [];
  let sentAt = 0;
  let stopped = false;
  ws.on('message', (d) => {
    if ((JSON.parse(d.toString()) as { type: string }).type !== 'pong') return;
    rtts.push(performance.now() - sentAt);
    if (!stopped) setTimeout(tick, PROBE_INTERVAL_MS);
  });
  const tick = () => {
    sentAt = performance.now();
    ws.send('{"type":"ping"}');
  };
  tick();
  return { rtts, stop: () => (stopped = true) };
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** Sends `frames` as fast as the socket takes them (bounded count), until it closes. Resolves the close code. */
function flood(ws: WebSocket, frames: number, frame: () => string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    let sent = 0;
    const closed = new Promise<string>((r) => ws.once('close', (code) => r(`close ${code}`)));
    const pump = () => {
      while (sent < frames && ws.readyState === WebSocket.OPEN) {
        ws.send(frame());
        sent++;
        if (ws.bufferedAmount > 4 << 20) return setImmediate(pump); // let the kernel drain
      }
    };
    pump();
    const limit = setTimeout(() => resolve(`still open after ${sent} frames`), PHASE_MS);
    void closed.then((outcome) => {
      clearTimeout(limit);
      resolve(`${outcome} after ${sent} frames`);
    });
  });
}

function nested(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

async function storm(url: (i: number) => string, count: number, hello: boolean): Promise<string> {
  const statuses = new Map<string, number>();
  const sockets: WebSocket[] = [];
  const count1 = (k: string) => statuses.set(k, (statuses.get(k) ?? 0) + 1);
  await Promise.all(
    Array.from(
      { length: count },
      (_, i) =>
        new Promise<void>((resolve) => {
          const ws = new WebSocket(url(i));
          sockets.push(ws);
          const t = setTimeout(() => {
            count1('no answer');
            resolve();
          }, PHASE_MS);
          ws.once('open', () => {
            if (hello) ws.send('{"type":"hello","payload":{}}');
            count1('upgraded');
            clearTimeout(t);
            resolve();
          });
          ws.once('unexpected-response', (_q, res) => {
            count1(`HTTP ${res.statusCode}`);
            clearTimeout(t);
            resolve();
          });
          ws.on('error', () => undefined);
        }),
    ),
  );
  // Upgraded sockets that never say hello: how long the server keeps them.
  const started = Date.now();
  const open = sockets.filter((s) => s.readyState === WebSocket.OPEN);
  const lifetimes: number[] = [];
  await Promise.all(
    open.map(
      (s) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 12_000);
          s.once('close', (code) => {
            lifetimes.push(Date.now() - started);
            count1(`closed ${code}`);
            clearTimeout(t);
            resolve();
          });
        }),
    ),
  );
  for (const s of sockets) s.terminate();
  const life = lifetimes.length > 0 ? `, closed after p50 ${pct(lifetimes, 50)} ms` : '';
  return [...statuses].map(([k, v]) => `${v}× ${k}`).join(', ') + life;
}

/**
 * Each attack runs in a child process of this script, so the attacker's own work (serialising and
 * writing hundreds of MiB) never delays the probe's event loop: the probe measures the server only.
 */
const ATTACKS: Record<string, (base: string) => Promise<string>> = {
  'send, body nested 6,000 deep': async (base) => {
    const ws = await connect(`${base}?user_id=attacker-deep`);
    const body = nested(6000);
    let n = 0;
    return flood(
      ws,
      5_000,
      () => `{"type":"send","msg_id":"d${n++}","payload":{"conversation_id":"bench-room","body":${body}}}`,
    );
  },
  '60k-char refs, client never reads': async (base) => {
    const ws = await connect(`${base}?user_id=attacker-refs`);
    const socket = (ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    const ref = 'r'.repeat(60_000);
    const outcome = await flood(ws, 3_000, () => `{"type":"x","msg_id":"${ref}"}`);
    if (ws.readyState === WebSocket.CLOSED) return outcome;
    // It never read, so it cannot have seen a close yet: read now and see how the server ended it.
    socket.resume();
    const resumedAt = Date.now();
    const code = await new Promise<string>((r) => {
      const t = setTimeout(() => r('no close from the server within 40 s'), 40_000);
      ws.once('close', (c) => {
        clearTimeout(t);
        r(`close ${c} after ${Date.now() - resumedAt} ms`);
      });
    });
    return `${outcome}; on reading: ${code}`;
  },
  'ping flood': async (base) =>
    flood(await connect(`${base}?user_id=attacker-ping`), 200_000, () => '{"type":"ping"}'),
  'bad JSON flood': async (base) =>
    flood(await connect(`${base}?user_id=attacker-json`), 200_000, () => '{"type":'),
  '1,500 upgrades that never say hello': (base) => storm((i) => `${base}?user_id=silent-${i}`, 1_500, false),
  '200 connections of one user': (base) => storm(() => `${base}?user_id=greedy`, 200, true),
};

function attackInChild(name: string, base: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [__filename, 'attack', name, base], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve(out.trim()) : reject(new Error(`attack ${name} exited ${code}`)),
    );
  });
}

async function main(): Promise<void> {
  if (process.argv[2] === 'attack') {
    const attack = ATTACKS[process.argv[3]];
    if (!attack) throw new Error(`unknown attack ${process.argv[3]}`);
    console.log(await attack(process.argv[4]));
    process.exit(0);
  }
  const port = await freePort();
  const base = `ws://127.0.0.1:${port}/ws`;
  const server: ChildProcess = spawn(process.execPath, [join(__dirname, '../../dist/main.js')], {
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'error',
      NODE_ENV: 'development',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const pid = server.pid!;
  let exited: string | null = null;
  server.once('exit', (code, signal) => (exited = `exited code=${code} signal=${signal}`));
  try {
    await waitFor('server up', async () => (await fetch(`http://127.0.0.1:${port}/health/live`)).ok);
    const probeWs = await connect(`${base}?user_id=probe`);

    const rows: string[][] = [];
    let peakRss = rssMiB(pid);
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiB(pid))), 20);
    const phase = async (name: string, attack: () => Promise<string>) => {
      const probe = startProbe(probeWs);
      peakRss = rssMiB(pid);
      const before = peakRss;
      const outcome = await attack();
      await new Promise((r) => setTimeout(r, 200)); // let the probe see the tail of the attack
      probe.stop();
      rows.push([name, pct(probe.rtts, 50), pct(probe.rtts, 99), before, peakRss, outcome].map(String));
      if (exited) throw new Error(`server ${exited} during ${name}`);
    };

    await phase('idle', () => new Promise((r) => setTimeout(() => r('-'), PHASE_MS)));
    await fetch(`http://127.0.0.1:${port}/v1/conversations/bench-room`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members: ['attacker-deep', 'probe'] }),
    });
    for (const name of Object.keys(ATTACKS)) await phase(name, () => attackInChild(name, base));
    clearInterval(sampler);

    const alive = (await fetch(`http://127.0.0.1:${port}/health/live`)).ok;
    const idle = Number(rows[0][1]);
    console.log(
      `relay hostile-client bench: ${PHASE_MS} ms per phase, probe ping every ${PROBE_INTERVAL_MS} ms`,
    );
    console.log(
      '| phase | probe p50 ms | probe p99 ms | p99 × idle p50 | server RSS before → peak (MiB) | how the attacker ended |',
    );
    console.log('|---|---|---|---|---|---|');
    for (const [name, p50, p99, before, peak, outcome] of rows) {
      console.log(
        `| ${name} | ${Number(p50).toFixed(2)} | ${Number(p99).toFixed(2)} | ${(Number(p99) / idle).toFixed(1)} | ${Number(before).toFixed(0)} → ${Number(peak).toFixed(0)} | ${outcome} |`,
      );
    }
    console.log(
      `server alive after all phases: ${alive && !exited ? 'yes' : `NO (${exited ?? 'health failed'})`}`,
    );
    probeWs.terminate();
  } finally {
    server.kill('SIGTERM');
  }
}

main().catch((err: Error) => {
  console.error(`bench failed: ${err.message}`);
  process.exit(1);
});
