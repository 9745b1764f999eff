/**
 * Flow control of sends: `rate_limited` retries, pacing (resendBurst) and the wire order of first
 * transmissions and re-sends.
 */
import type { Ack, RelayError } from '../src/index';
import { FakeWebSocket, fakeConnect, openClient, resetFakes, settle } from './fake-web-socket';
import type { Frame } from './fake-web-socket';

beforeEach(() => {
  jest.useFakeTimers();
  resetFakes();
});
afterEach(() => jest.useRealTimers());

/** A seeded PRNG (mulberry32), so jittered timers fire out of order, reproducibly. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const refsSent = (ws: FakeWebSocket) => ws.sentOfType('send').map((f) => f.msg_id!);
const bodiesSent = (ws: FakeWebSocket) => ws.sentOfType('send').map((f) => f.payload!.body);

describe('rate_limited', () => {
  it('re-sends the same frame after a growing delay (200 ms doubling, equal jitter) instead of rejecting', async () => {
    const { client, ws } = await openClient(); // random = 0.5: delay = 0.75 x ceiling
    const sending = client.send('c1', 'x');
    const [ref] = refsSent(ws);
    const firstFrame = ws.sent.at(-1);

    ws.refuse(ref, 'rate_limited');
    await jest.advanceTimersByTimeAsync(149);
    expect(refsSent(ws)).toEqual([ref]);
    await jest.advanceTimersByTimeAsync(1);
    expect(refsSent(ws)).toEqual([ref, ref]);
    expect(ws.sent.at(-1)).toEqual(firstFrame); // the same bytes, the same ref

    ws.refuse(ref, 'rate_limited');
    await jest.advanceTimersByTimeAsync(299);
    expect(refsSent(ws)).toHaveLength(2);
    await jest.advanceTimersByTimeAsync(1);
    expect(refsSent(ws)).toHaveLength(3);

    ws.ack(ref, 'M1');
    await expect(sending).resolves.toMatchObject({ id: 'M1', ref });
    expect(client.pendingSends).toBe(0);
  });

  it('never retries at once, and caps the delay at 5 s', async () => {
    const { client, ws } = await openClient({ random: () => 0, sendTimeoutMs: 600_000 });
    void client.send('c1', 'x');
    const [ref] = refsSent(ws);
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      ws.refuse(ref, 'rate_limited');
      const before = refsSent(ws).length;
      let waited = 0;
      while (refsSent(ws).length === before) {
        await jest.advanceTimersByTimeAsync(1);
        waited++;
      }
      delays.push(waited);
    }
    // random() = 0 gives the floor of each window: half the ceiling.
    expect(delays).toEqual([100, 200, 400, 800, 1600, 2500, 2500, 2500]);
  });

  it('keeps retrying until the send deadline, then rejects `timeout` (not `rate_limited`)', async () => {
    const { client, ws } = await openClient({ sendTimeoutMs: 2000 });
    const outcome = client.send('c1', 'x').catch((e: RelayError) => e);
    const [ref] = refsSent(ws);
    ws.onClientFrame = () => setTimeout(() => ws.refuse(ref, 'rate_limited'), 1);
    ws.refuse(ref, 'rate_limited');
    await jest.advanceTimersByTimeAsync(2000);
    expect(await outcome).toMatchObject({ code: 'timeout', ref });
    // Sent at 0, then after 150, 300 and 600 ms (plus 1 ms for each refusal): 4 frames.
    expect(refsSent(ws)).toEqual([ref, ref, ref, ref]);
    expect(client.pendingSends).toBe(0);
    await jest.advanceTimersByTimeAsync(10_000);
    expect(refsSent(ws)).toHaveLength(4); // no retry after the deadline
  });

  it('holds later sends behind one waiting to retry: re-sends and new sends keep send() order', async () => {
    // The first refusal draws 0.9 (waits 190 ms), the second 0.1 (110 ms): C's timer fires first.
    const draws = [0.9, 0.1];
    const { client, ws } = await openClient({ random: () => draws.shift() ?? 0.5 });
    for (const body of ['A', 'B', 'C']) void client.send('c1', body);
    const [a, b, c] = refsSent(ws);
    ws.refuse(a, 'rate_limited');
    ws.ack(b);
    ws.refuse(c, 'rate_limited');
    void client.send('c1', 'D');
    expect(bodiesSent(ws)).toEqual(['A', 'B', 'C']); // D may not pass A or C

    await jest.advanceTimersByTimeAsync(110);
    expect(bodiesSent(ws)).toEqual(['A', 'B', 'C']); // C is due, but A is still waiting
    await jest.advanceTimersByTimeAsync(80);
    expect(bodiesSent(ws)).toEqual(['A', 'B', 'C', 'A', 'C', 'D']);
  });

  it('gives every retry a fresh start on a new connection (its rate limit is fresh too)', async () => {
    const { client, ws } = await openClient();
    void client.send('c1', 'x');
    const [ref] = refsSent(ws);
    ws.refuse(ref, 'rate_limited'); // would retry in 150 ms
    ws.serverClose(1012);
    await settle();
    FakeWebSocket.last.accept();
    expect(refsSent(FakeWebSocket.last)).toEqual([ref]);
    await jest.advanceTimersByTimeAsync(1000);
    expect(refsSent(FakeWebSocket.last)).toEqual([ref]); // the old timer does not send it twice
    expect(client.pendingSends).toBe(1);
  });
});

describe('pacing (resendBurst)', () => {
  it('flushes at most resendBurst queued sends, then one more per answer, in send() order', async () => {
    const client = fakeConnect({ resendBurst: 3 });
    const outcomes = [1, 2, 3, 4, 5, 6, 7].map((n) => client.send('c1', n).catch((e: RelayError) => e.code));
    await settle();
    const ws = FakeWebSocket.last;
    ws.accept();
    expect(bodiesSent(ws)).toEqual([1, 2, 3]);

    void client.send('c1', 8); // behind the backlog, not ahead of it
    expect(bodiesSent(ws)).toEqual([1, 2, 3]);

    const refs = () => refsSent(ws);
    ws.ack(refs()[0]);
    expect(bodiesSent(ws)).toEqual([1, 2, 3, 4]);
    ws.refuse(refs()[1], 'forbidden'); // a definite answer frees a slot too
    expect(bodiesSent(ws)).toEqual([1, 2, 3, 4, 5]);
    await expect(outcomes[1]).resolves.toBe('forbidden');

    // Lost with 3, 4 and 5 unanswered: the next connection re-sends those first, 3 at a time.
    ws.serverClose(1006);
    await jest.advanceTimersByTimeAsync(50);
    const next = FakeWebSocket.last;
    next.accept();
    expect(bodiesSent(next)).toEqual([3, 4, 5]);
    for (const expected of [
      [3, 4, 5, 6],
      [3, 4, 5, 6, 7],
      [3, 4, 5, 6, 7, 8],
    ]) {
      next.ack(refsSent(next)[expected.length - 4]);
      expect(bodiesSent(next)).toEqual(expected);
    }
    for (const ref of refsSent(next).slice(3)) next.ack(ref);
    expect(client.pendingSends).toBe(0);
  });

  it('defaults to 100 and rejects a non-positive value', async () => {
    const client = fakeConnect();
    for (let i = 0; i < 150; i++) void client.send('c1', i);
    await settle();
    FakeWebSocket.last.accept();
    expect(refsSent(FakeWebSocket.last)).toHaveLength(100);
    expect(() => fakeConnect({ resendBurst: 0 })).toThrow(RangeError);
  });

  it('a send that timed out while waiting its turn frees its place', async () => {
    const client = fakeConnect({ resendBurst: 1 });
    const first = client.send('c1', 'first', { timeoutMs: 1000 }).catch((e: RelayError) => e.code);
    void client.send('c1', 'second');
    await settle();
    const ws = FakeWebSocket.last;
    ws.accept();
    expect(bodiesSent(ws)).toEqual(['first']);
    await jest.advanceTimersByTimeAsync(1000);
    await expect(first).resolves.toBe('timeout');
    expect(bodiesSent(ws)).toEqual(['first', 'second']);
  });
});

describe('a backlog against a rate-limited server', () => {
  /**
   * 300 sends queued offline; a server with a token bucket of 200 refilled at 50/s (the service's
   * defaults: SEND_BURST, SEND_RATE_PER_SEC) that answers 5 ms after each frame, deduplicates by ref
   * across connections, and drops its answers when the connection dies. The first connection dies
   * right after the client flushed its first burst. Real (seeded) jitter, so retry timers of later
   * sends often fire before those of earlier ones.
   */
  it('resolves every send exactly once, never more than resendBurst on the wire, in send() order', async () => {
    const BURST = 200;
    const RATE_PER_SEC = 50;
    const LATENCY_MS = 5;
    const COUNT = 300;
    const WINDOW = 100;

    const client = fakeConnect({ random: seeded(7) });
    const callOrder: string[] = [];
    const resolved = new Map<string, Ack[]>();
    const rejected: RelayError[] = [];
    for (let i = 0; i < COUNT; i++) {
      const ref = `r${String(i).padStart(3, '0')}`;
      callOrder.push(ref);
      resolved.set(ref, []);
      client.send('c1', { i }, { ref }).then(
        (ack) => resolved.get(ref)!.push(ack),
        (err: RelayError) => rejected.push(err),
      );
    }

    /** As the client knows it: what it must still transmit ('todo'), is waiting on ('wire'), or is done. */
    const status = new Map<string, 'todo' | 'wire' | 'done'>(callOrder.map((r) => [r, 'todo']));
    const violations: string[] = [];
    const stored = new Map<string, string>(); // ref -> server message id
    let rateLimited = 0;
    let maxOnWire = 0;

    const serve = (ws: FakeWebSocket) => {
      let tokens = BURST;
      let tokensAt = Date.now();
      ws.onClientFrame = (frame: Frame) => {
        if (frame.type !== 'send') return;
        const ref = frame.msg_id!;
        // Checked at the moment the client puts the frame on the wire.
        if (status.get(ref) !== 'todo') violations.push(`${ref} sent while ${status.get(ref)}`);
        const earlier = callOrder.slice(0, callOrder.indexOf(ref));
        const overtaken = earlier.filter((r) => status.get(r) === 'todo');
        if (overtaken.length) violations.push(`${ref} sent before ${overtaken.join(',')}`);
        status.set(ref, 'wire');
        maxOnWire = Math.max(maxOnWire, [...status.values()].filter((s) => s === 'wire').length);

        const now = Date.now();
        tokens = Math.min(BURST, tokens + ((now - tokensAt) / 1000) * RATE_PER_SEC);
        tokensAt = now;
        const accepted = tokens >= 1;
        if (accepted) {
          tokens -= 1;
          if (!stored.has(ref)) stored.set(ref, `M-${stored.size}`);
        }
        setTimeout(() => {
          if (ws.readyState !== 1) return; // the connection died: the answer is lost
          if (accepted) {
            status.set(ref, 'done');
            ws.ack(ref, stored.get(ref));
          } else {
            rateLimited++;
            status.set(ref, 'todo');
            ws.refuse(ref, 'rate_limited', 'too many messages, slow down');
          }
        }, LATENCY_MS);
      };
    };

    await settle();
    const first = FakeWebSocket.last;
    serve(first);
    first.accept();
    expect(refsSent(first)).toEqual(callOrder.slice(0, WINDOW)); // one burst, in order
    first.serverClose(1006); // before any answer
    for (const [ref, s] of status) if (s === 'wire') status.set(ref, 'todo');

    await jest.advanceTimersByTimeAsync(100); // the first reconnect delay is below 100 ms
    const second = FakeWebSocket.last;
    expect(second).not.toBe(first);
    serve(second);
    second.accept();
    expect(refsSent(second)).toEqual(callOrder.slice(0, WINDOW)); // the lost burst first, same refs

    const settled = () => rejected.length + [...resolved.values()].filter((a) => a.length > 0).length;
    for (let t = 0; t < 30_000 && settled() < COUNT; t += 10) await jest.advanceTimersByTimeAsync(10);

    expect(violations).toEqual([]);
    expect(rejected).toEqual([]);
    expect(rateLimited).toBeGreaterThan(0); // the scenario did exercise the rate limit
    expect(maxOnWire).toBeLessThanOrEqual(WINDOW);
    for (const ref of callOrder) {
      const acks = resolved.get(ref)!;
      expect(acks).toHaveLength(1);
      expect(acks[0]).toMatchObject({ ref, id: stored.get(ref) });
    }
    expect(stored.size).toBe(COUNT);
    expect(client.pendingSends).toBe(0);
    // The 100 sends accepted on the dead connection were re-sent and answered with their first ack.
    expect(new Set(refsSent(second)).size).toBe(COUNT);
  });
});
