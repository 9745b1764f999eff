import { WebSocket } from 'ws';
import { MemoryOutboxDriver } from '../outbox/drivers/memory-outbox.driver';
import { decodeCursor } from '../outbox/cursor';
import { Connection, ConnectionLimits, messageFrame } from './connection';

class FakeSocket {
  readyState: number = WebSocket.OPEN;
  bufferedAmount = 0;
  sent: string[] = [];
  send(text: string) {
    this.sent.push(text);
  }
  close() {
    this.readyState = WebSocket.CLOSED;
  }
  once() {}
  seqs(): number[] {
    return this.sent.map((s) => decodeCursor((JSON.parse(s) as { msg_id: string }).msg_id)!.seq);
  }
}

const LIMITS: ConnectionLimits = {
  sendRatePerSec: 1,
  sendBurst: 1,
  frameRatePerSec: 1000,
  frameBurst: 1000,
  floodCloseAfter: 100,
  maxBufferedBytes: 16 << 20,
};

const env = (id: string) => ({ id, conversation_id: 'c', from: 'a', ts: 1, body: id });

async function setup(preloaded: number) {
  const outbox = new MemoryOutboxDriver(60_000);
  const stored = await outbox.append(
    Array.from({ length: preloaded }, (_, i) => ({ userId: 'u', envelope: env(`m${i + 1}`) })),
  );
  const ws = new FakeSocket();
  const conn = new Connection('c1', 'u', null, ws as unknown as WebSocket, outbox, LIMITS);
  const frameFor = (seq: number) =>
    messageFrame(`${outbox.epoch()}-${String(seq).padStart(12, '0')}`, JSON.stringify(env(`m${seq}`)));
  return { outbox, ws, conn, stored, frameFor };
}

const settle = () => new Promise((r) => setImmediate(r));
async function settled(cond: () => boolean) {
  for (let i = 0; i < 100 && !cond(); i++) await settle();
  expect(cond()).toBe(true);
}

describe('Connection delivery ordering', () => {
  it('replays after the cursor, then delivers pushes that arrived during the replay, each once, in order', async () => {
    const { outbox, ws, conn, frameFor } = await setup(5);
    conn.push(5, frameFor(5)); // arrives before start: must wait, then be dropped as already replayed
    conn.start(outbox.epoch(), 2);
    await outbox.append([{ userId: 'u', envelope: env('m6') }]);
    conn.push(6, frameFor(6));
    await settled(() => ws.sent.length === 4);
    expect(ws.seqs()).toEqual([3, 4, 5, 6]);
  });

  it('fills a gap from the outbox when a push skips seqs (a dropped push)', async () => {
    const { outbox, ws, conn, frameFor } = await setup(1);
    conn.start(outbox.epoch(), 0);
    await settled(() => ws.sent.length === 1);
    await outbox.append([2, 3, 4].map((i) => ({ userId: 'u', envelope: env(`m${i}`) })));
    conn.push(4, frameFor(4)); // 2 and 3 were never pushed
    await settled(() => ws.sent.length === 4);
    expect(ws.seqs()).toEqual([1, 2, 3, 4]);
    conn.push(3, frameFor(3)); // late duplicate
    conn.push(5, frameFor(5));
    expect(ws.seqs()).toEqual([1, 2, 3, 4, 5]);
  });

  it('resync re-reads the outbox without duplicating', async () => {
    const { outbox, ws, conn } = await setup(2);
    conn.start(outbox.epoch(), 0);
    await settled(() => ws.sent.length === 2);
    await outbox.append([{ userId: 'u', envelope: env('m3') }]);
    void conn.resync();
    await settled(() => ws.sent.length === 3);
    void conn.resync();
    await settle();
    expect(ws.seqs()).toEqual([1, 2, 3]);
  });

  it('takes send tokens up to the burst, then refills with time', () => {
    const ws = new FakeSocket();
    const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, new MemoryOutboxDriver(1), {
      ...LIMITS,
      sendRatePerSec: 2,
      sendBurst: 2,
    });
    const t0 = Date.now();
    expect(conn.takeSendToken(t0)).toBe(true);
    expect(conn.takeSendToken(t0)).toBe(true);
    expect(conn.takeSendToken(t0)).toBe(false);
    expect(conn.takeSendToken(t0 + 500)).toBe(true);
  });
});

/** A socket that records close codes and can pretend the client stopped reading. */
class BoundedSocket extends FakeSocket {
  closeCode: number | null = null;
  countBytes = false;
  override send(text: string) {
    super.send(text);
    if (this.countBytes) this.bufferedAmount += text.length;
  }
  override close(code?: number) {
    this.closeCode = code ?? null;
    super.close();
  }
  terminate() {
    this.readyState = WebSocket.CLOSED;
  }
}

function observed() {
  const events = { rejected: [] as string[], closed: [] as number[] };
  const observer = {
    frameRejected: (code: string) => events.rejected.push(code),
    closedByServer: (code: number) => events.closed.push(code),
  };
  return { events, observer };
}

describe('Connection bounds', () => {
  const outbox = new MemoryOutboxDriver(60_000);

  it('frame budget: burst, then rate_limited, then flooding once over-budget frames outnumber those within budget by floodCloseAfter', () => {
    const ws = new BoundedSocket();
    const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, outbox, {
      ...LIMITS,
      frameBurst: 3,
      frameRatePerSec: 10,
      floodCloseAfter: 4,
    });
    const t0 = Date.now();
    expect([1, 2, 3].map(() => conn.takeFrameToken(t0))).toEqual(['ok', 'ok', 'ok']);
    expect([1, 2, 3].map(() => conn.takeFrameToken(t0))).toEqual(['limited', 'limited', 'limited']);
    expect(conn.takeFrameToken(t0 + 100)).toBe('ok'); // one token refilled: the count goes down by one
    expect(conn.takeFrameToken(t0 + 100)).toBe('limited');
    expect(conn.takeFrameToken(t0 + 100)).toBe('flooding');
  });

  it('a client at ten times its frame rate is closed although each refill lets a frame through', () => {
    const ws = new BoundedSocket();
    const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, outbox, {
      ...LIMITS,
      frameBurst: 10,
      frameRatePerSec: 100,
      floodCloseAfter: 50,
    });
    const t0 = Date.now();
    const verdicts: string[] = [];
    // 1,000 frames/s for at most 1 s: one frame per millisecond, one token per 10 ms.
    for (let ms = 0; ms < 1_000 && verdicts.at(-1) !== 'flooding'; ms++)
      verdicts.push(conn.takeFrameToken(t0 + ms));
    expect(verdicts.at(-1)).toBe('flooding');
    expect(verdicts.filter((v) => v === 'ok').length).toBeGreaterThan(10); // refills did let frames through
    expect(verdicts.length).toBeLessThan(100);
  });

  it('a client that only grazes its frame rate is rate-limited, never closed', () => {
    const ws = new BoundedSocket();
    const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, outbox, {
      ...LIMITS,
      frameBurst: 1,
      frameRatePerSec: 100,
      floodCloseAfter: 5,
    });
    const t0 = Date.now();
    // Two frames every 10 ms: one within budget, one over it, for a simulated 10 s.
    for (let ms = 10; ms <= 10_000; ms += 10) {
      expect(conn.takeFrameToken(t0 + ms)).toBe('ok');
      expect(conn.takeFrameToken(t0 + ms)).toBe('limited');
    }
  });

  it('the frame budget and the send budget are separate buckets', () => {
    const ws = new BoundedSocket();
    const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, outbox, {
      ...LIMITS,
      frameBurst: 1,
      sendBurst: 2,
    });
    const t0 = Date.now();
    expect(conn.takeFrameToken(t0)).toBe('ok');
    expect(conn.takeFrameToken(t0)).toBe('limited');
    expect(conn.takeSendToken(t0)).toBe(true);
    expect(conn.takeSendToken(t0)).toBe(true);
    expect(conn.takeSendToken(t0)).toBe(false);
  });

  it('every write checks the unsent bytes: above maxBufferedBytes it closes 1013 instead of queueing', async () => {
    const ws = new BoundedSocket();
    const { events, observer } = observed();
    const conn = new Connection(
      'c',
      'u',
      null,
      ws as unknown as WebSocket,
      outbox,
      { ...LIMITS, maxBufferedBytes: 65_536 },
      observer,
    );
    conn.sendRaw('{"type":"pong"}');
    conn.sendError('bad_frame', 'x', 'r');
    expect(ws.sent).toHaveLength(2);
    ws.bufferedAmount = 65_537; // the client stopped reading
    conn.sendError('unknown_type', 'y', 'r2');
    expect(ws.sent).toHaveLength(2);
    expect(ws.closeCode).toBe(1013);
    conn.sendRaw('{"type":"pong"}'); // closed: nothing more is written, no second close
    conn.push(1, '{}');
    expect(ws.sent).toHaveLength(2);
    expect(events).toEqual({ rejected: ['bad_frame', 'unknown_type'], closed: [1013] });
  });

  it('a live push to a client that stopped reading closes 1013', async () => {
    const ws = new BoundedSocket();
    const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, outbox, {
      ...LIMITS,
      maxBufferedBytes: 65_536,
    });
    conn.start(outbox.epoch(), 0);
    await settled(() => ws.sent.length === 0 && conn.state === 'open');
    for (let i = 0; i < 100; i++) await settle(); // first fill done
    ws.bufferedAmount = 70_000;
    conn.push(1, messageFrame('e-1', '{}'));
    expect(ws.closeCode).toBe(1013);
    expect(ws.sent).toHaveLength(0);
  });

  it('a fill of large messages waits for the socket below the cap instead of overrunning it', async () => {
    const store = new MemoryOutboxDriver(60_000);
    const big = 'b'.repeat(10_000);
    await store.append(
      Array.from({ length: 30 }, (_, i) => ({ userId: 'u', envelope: { ...env(`m${i}`), body: big } })),
    );
    const ws = new BoundedSocket();
    ws.countBytes = true;
    const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, store, {
      ...LIMITS,
      maxBufferedBytes: 65_536,
    });
    conn.start(store.epoch(), 0);
    let peak = 0;
    for (let i = 0; i < 500 && ws.sent.length < 30; i++) {
      await new Promise((r) => setTimeout(r, 5));
      peak = Math.max(peak, ws.bufferedAmount);
      ws.bufferedAmount = 0; // the client read everything
    }
    expect(ws.sent).toHaveLength(30);
    expect(ws.closeCode).toBeNull();
    expect(peak).toBeLessThanOrEqual(65_536);
  });
});

describe('Connection token expiry timer', () => {
  afterEach(() => jest.useRealTimers());

  it('closes 4001 at exp, without waiting for a heartbeat', () => {
    jest.useFakeTimers();
    const ws = new BoundedSocket();
    const conn = new Connection(
      'c',
      'u',
      Date.now() + 1_500,
      ws as unknown as WebSocket,
      new MemoryOutboxDriver(1),
      LIMITS,
    );
    jest.advanceTimersByTime(1_499);
    expect(ws.closeCode).toBeNull();
    expect(conn.expired()).toBe(false);
    jest.advanceTimersByTime(1);
    expect(ws.closeCode).toBe(4001);
    expect(conn.expired()).toBe(true);
  });

  it('an exp beyond setTimeout range re-arms instead of firing early', () => {
    jest.useFakeTimers();
    const ws = new BoundedSocket();
    const max = 2 ** 31 - 1;
    new Connection(
      'c',
      'u',
      Date.now() + max + 60_000,
      ws as unknown as WebSocket,
      new MemoryOutboxDriver(1),
      LIMITS,
    );
    jest.advanceTimersByTime(max);
    expect(ws.closeCode).toBeNull();
    jest.advanceTimersByTime(60_000);
    expect(ws.closeCode).toBe(4001);
  });

  it('is cleared when the connection closes', () => {
    jest.useFakeTimers();
    const ws = new BoundedSocket();
    const conn = new Connection(
      'c',
      'u',
      Date.now() + 10_000,
      ws as unknown as WebSocket,
      new MemoryOutboxDriver(1),
      LIMITS,
    );
    expect(jest.getTimerCount()).toBe(1);
    conn.markClosed();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('no token expiry, no timer', () => {
    jest.useFakeTimers();
    new Connection(
      'c',
      'u',
      null,
      new BoundedSocket() as unknown as WebSocket,
      new MemoryOutboxDriver(1),
      LIMITS,
    );
    expect(jest.getTimerCount()).toBe(0);
  });
});
