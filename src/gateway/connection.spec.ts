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
    conn.resync();
    await settled(() => ws.sent.length === 3);
    conn.resync();
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
