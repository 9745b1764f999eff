/**
 * The load generator, forked by peers-bench.ts so its CPU never counts as a server's. Driven over
 * IPC one step at a time (set up, run, close) so the orchestrator can sample server CPU and heap
 * around exactly the measured part. Speaks two dialects: relay's frames (relay and the raw `ws`
 * relay) and Socket.IO. Every send carries its send time in the body; the same process receives,
 * so delivery latency needs no clock agreement. Every wait has a deadline.
 */
import { io as ioClient, Socket } from 'socket.io-client';
import WebSocket from 'ws';

export type Dialect = 'relay' | 'ws' | 'socketio';

interface Body {
  t: number;
  n: number;
  pad: string;
}

interface PeerClient {
  send(conversationId: string, body: Body): Promise<void>;
  onMessage(cb: (body: Body) => void): void;
  close(): void;
}

export type Command =
  | { cmd: 'idle'; dialect: Dialect; urls: string[]; count: number; run: string }
  | {
      cmd: 'setup-rooms';
      dialect: Dialect;
      urls: string[];
      conversations: number;
      members: number;
      run: string;
    }
  | { cmd: 'throughput'; perSender: number; window: number; payloadBytes: number; timeoutMs: number }
  | { cmd: 'bigroom'; messages: number; payloadBytes: number; timeoutMs: number }
  | { cmd: 'close-all' };

export interface ThroughputResult {
  sent: number;
  acked: number;
  delivered: number;
  expected: number;
  elapsedMs: number;
  ack: number[]; // p50, p99
  delivery: number[]; // p50, p99
}

const CONNECT_TIMEOUT_MS = 10_000;

function percentiles(xs: number[], ps: number[]): number[] {
  const s = [...xs].sort((a, b) => a - b);
  return ps.map((p) => (s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN));
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** relay's frames over a plain WebSocket: hello -> welcome, send(ref) -> ack(ref), message. */
async function connectRelayDialect(url: string, userId: string, joins: string[]): Promise<PeerClient> {
  const q = new URLSearchParams({ user_id: userId });
  if (joins.length) q.set('join', joins.join(','));
  const ws = new WebSocket(`${url}?${q}`);
  const pending = new Map<string, () => void>();
  const listeners: ((b: Body) => void)[] = [];
  let nextRef = 0;
  await withDeadline(
    new Promise<void>((resolve, reject) => {
      ws.once('error', reject);
      ws.once('open', () => ws.send(JSON.stringify({ type: 'hello', payload: {} })));
      ws.on('message', (data) => {
        const f = JSON.parse(data.toString()) as {
          type: string;
          payload: { ref?: string; body?: Body; code?: string; message?: string };
        };
        if (f.type === 'welcome') resolve();
        else if (f.type === 'ack') pending.get(f.payload.ref!)?.();
        else if (f.type === 'message') for (const l of listeners) l(f.payload.body!);
        else if (f.type === 'error') reject(new Error(`${userId}: ${f.payload.code} ${f.payload.message}`));
      });
    }),
    CONNECT_TIMEOUT_MS,
    `connect ${userId}`,
  );
  return {
    send(conversationId, body) {
      const ref = `r${++nextRef}`;
      return new Promise<void>((resolve) => {
        pending.set(ref, () => {
          pending.delete(ref);
          resolve();
        });
        ws.send(
          JSON.stringify({ type: 'send', msg_id: ref, payload: { conversation_id: conversationId, body } }),
        );
      });
    },
    onMessage: (cb) => listeners.push(cb),
    close: () => ws.terminate(),
  };
}

async function connectSocketIo(url: string, userId: string, joins: string[]): Promise<PeerClient> {
  // Socket.IO reads a URL path as a namespace: connect to the server root on the default one.
  const socket: Socket = ioClient(url.replace(/^ws/, 'http').replace(/\/ws$/, ''), {
    transports: ['websocket'],
    auth: { user_id: userId, join: joins },
    reconnection: false,
  });
  await withDeadline(
    new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    }),
    CONNECT_TIMEOUT_MS,
    `connect ${userId}`,
  );
  return {
    send: (conversationId, body) =>
      new Promise<void>((resolve) =>
        socket.emit('send', { conversation_id: conversationId, body }, () => resolve()),
      ),
    onMessage: (cb) => socket.on('message', (m: { body: Body }) => cb(m.body)),
    close: () => socket.disconnect(),
  };
}

function connect(dialect: Dialect, url: string, userId: string, joins: string[]): Promise<PeerClient> {
  return dialect === 'socketio'
    ? connectSocketIo(url, userId, joins)
    : connectRelayDialect(url, userId, joins);
}

/** Declares a conversation's members where the server needs it (relay: its directory API). */
async function declareRoom(
  dialect: Dialect,
  url: string,
  conversationId: string,
  members: string[],
): Promise<void> {
  if (dialect !== 'relay') return; // the ws relay and Socket.IO take membership from the connection
  const http = url.replace(/^ws/, 'http').replace(/\/ws$/, '');
  const res = await fetch(`${http}/v1/conversations/${conversationId}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ members }),
    signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS),
  });
  if (!res.ok) throw new Error(`PUT members of ${conversationId}: ${res.status} ${await res.text()}`);
}

/** Opens connections a few dozen at a time (the servers' accept queues, not the test, set the pace). */
async function openMany(jobs: (() => Promise<PeerClient>)[]): Promise<PeerClient[]> {
  const out: PeerClient[] = [];
  for (let i = 0; i < jobs.length; i += 50)
    out.push(...(await Promise.all(jobs.slice(i, i + 50).map((j) => j()))));
  return out;
}

let clients: PeerClient[] = [];
let rooms: { id: string; sender: PeerClient; members: PeerClient[] }[] = [];

async function handle(c: Command): Promise<unknown> {
  switch (c.cmd) {
    case 'idle': {
      const jobs = Array.from(
        { length: c.count },
        (_, i) => () => connect(c.dialect, c.urls[i % c.urls.length], `idle-${c.run}-${i}`, []),
      );
      clients.push(...(await openMany(jobs)));
      return { opened: c.count };
    }
    case 'setup-rooms': {
      rooms = [];
      for (let r = 0; r < c.conversations; r++) {
        const id = `p${c.run}-c${r}`;
        const users = Array.from({ length: c.members }, (_, m) => `p${c.run}-c${r}-u${m}`);
        await declareRoom(c.dialect, c.urls[0], id, users);
        const members = await openMany(
          users.map((u, m) => () => connect(c.dialect, c.urls[(r * c.members + m) % c.urls.length], u, [id])),
        );
        clients.push(...members);
        rooms.push({ id, sender: members[0], members });
      }
      return { rooms: rooms.length };
    }
    case 'throughput':
      return throughput(c.perSender, c.window, c.payloadBytes, c.timeoutMs);
    case 'bigroom':
      return bigRoom(c.messages, c.payloadBytes, c.timeoutMs);
    case 'close-all':
      for (const client of clients) client.close();
      clients = [];
      rooms = [];
      return { closed: true };
  }
}

/** Every room's first member sends `perSender` messages with `window` unacked at a time. */
async function throughput(
  perSender: number,
  window: number,
  payloadBytes: number,
  timeoutMs: number,
): Promise<ThroughputResult> {
  const pad = 'x'.repeat(payloadBytes);
  const ackLat: number[] = [];
  const deliveryLat: number[] = [];
  const expected = rooms.reduce((sum, r) => sum + r.members.length * perSender, 0);
  let delivered = 0;
  let sent = 0;
  let lastDelivery = 0;
  let allDelivered: () => void = () => {};
  const done = new Promise<void>((resolve) => (allDelivered = resolve));
  for (const room of rooms) {
    for (const m of room.members) {
      m.onMessage((body) => {
        const now = performance.now();
        deliveryLat.push(now - body.t);
        lastDelivery = now;
        if (++delivered === expected) allDelivered();
      });
    }
  }
  const started = performance.now();
  const senders = rooms.map(async (room) => {
    let n = 0;
    const lane = async () => {
      while (n < perSender) {
        const body = { t: performance.now(), n: n++, pad };
        sent++;
        await room.sender.send(room.id, body);
        ackLat.push(performance.now() - body.t);
      }
    };
    await Promise.all(Array.from({ length: window }, lane));
  });
  let timedOut = false;
  await withDeadline(
    Promise.all([...senders, done]).then(() => undefined),
    timeoutMs,
    'throughput run',
  ).catch(() => (timedOut = true));
  const elapsedMs = (timedOut ? performance.now() : lastDelivery) - started;
  return {
    sent,
    acked: ackLat.length,
    delivered,
    expected,
    elapsedMs,
    ack: percentiles(ackLat, [50, 99]),
    delivery: percentiles(deliveryLat, [50, 99]),
  };
}

/** One room: its first member sends one message at a time; latency is send -> the last member's copy. */
async function bigRoom(
  messages: number,
  payloadBytes: number,
  timeoutMs: number,
): Promise<{ lastDelivery: number[]; completed: number }> {
  const room = rooms[0];
  const pad = 'x'.repeat(payloadBytes);
  const lat: number[] = [];
  let waiting: { n: number; left: number; resolve: () => void } | null = null;
  for (const m of room.members) {
    m.onMessage((body) => {
      if (waiting && body.n === waiting.n && --waiting.left === 0) waiting.resolve();
    });
  }
  for (let n = 0; n < messages; n++) {
    const t = performance.now();
    const all = new Promise<void>((resolve) => (waiting = { n, left: room.members.length, resolve }));
    await room.sender.send(room.id, { t, n, pad });
    await withDeadline(all, timeoutMs, `big room message ${n}`);
    lat.push(performance.now() - t);
  }
  return { lastDelivery: percentiles(lat, [50, 99]), completed: lat.length };
}

process.on('message', (c: Command) => {
  handle(c).then(
    (result) => process.send?.({ ok: true, result }),
    (err: Error) => process.send?.({ ok: false, error: err.message }),
  );
});
