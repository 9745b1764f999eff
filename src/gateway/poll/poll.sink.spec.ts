import { encodeCursor } from '../../outbox/cursor';
import { messageFrame } from '../connection';
import { AnswerCollector, PollSink } from './poll.sink';

const msg = (seq: number) => messageFrame(encodeCursor('e1', seq), `{"id":"m${seq}"}`);
const welcome = '{"type":"welcome","payload":{"cursor":"e1-000000000000","recovered":true}}';

function greeted(): PollSink {
  const sink = new PollSink();
  sink.send(welcome);
  return sink;
}

describe('PollSink', () => {
  it('answers the hello with the first frame (welcome), not queued', async () => {
    const sink = new PollSink();
    sink.send(welcome);
    await expect(sink.greeted).resolves.toEqual({ ok: true, welcome });
    expect(sink.bufferedAmount).toBe(0);
  });

  it('a hello answered by an error and a close greets with the close code', async () => {
    const sink = new PollSink();
    sink.send('{"type":"error","payload":{"code":"unavailable","message":"x"}}');
    sink.close(1011);
    await expect(sink.greeted).resolves.toEqual({ ok: false, code: 1011 });
  });

  it('hands queued frames to a poll in order, bounded by frames and bytes, each once', async () => {
    const sink = greeted();
    for (let seq = 1; seq <= 5; seq++) sink.send(msg(seq));
    expect(sink.bufferedAmount).toBeGreaterThan(0);
    const first = await sink.take(1000, 2, 1 << 20);
    expect(first).toEqual({ frames: [msg(1), msg(2)], lastSeq: 2 });
    const second = await sink.take(1000, 10, msg(3).length + 1);
    expect(second.frames).toEqual([msg(3)]); // the byte bound, with at least one frame
    const rest = await sink.take(1000, 10, 1 << 20);
    expect(rest).toEqual({ frames: [msg(4), msg(5)], lastSeq: 5 });
    expect(sink.bufferedAmount).toBe(0);
  });

  it('drops messages at or below the floor, queued or written later', async () => {
    const sink = greeted();
    sink.send(msg(1));
    sink.send('{"type":"pong"}');
    sink.send(msg(2));
    sink.advanceFloor(1);
    sink.send(msg(1)); // a refill that overlaps what the client has
    sink.send(msg(3));
    const take = await sink.take(1000, 10, 1 << 20);
    expect(take.frames).toEqual(['{"type":"pong"}', msg(2), msg(3)]);
  });

  it('a waiting poll is answered when frames arrive, and with nothing at its timeout or on close', async () => {
    const sink = greeted();
    const waiting = sink.take(10_000, 10, 1 << 20);
    sink.send(msg(1));
    sink.send(msg(2)); // written in the same run: one answer
    await expect(waiting).resolves.toEqual({ frames: [msg(1), msg(2)], lastSeq: 2 });
    const started = Date.now();
    await expect(sink.take(50, 10, 1 << 20)).resolves.toEqual({ frames: [], lastSeq: 0 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    const pending = sink.take(10_000, 10, 1 << 20);
    sink.close(1013);
    await expect(pending).resolves.toEqual({ frames: [], lastSeq: 0 });
    expect(sink.closeCode).toBe(1013);
  });

  it('a newer poll answers the older one; an aborted poll leaves frames for the next', async () => {
    const sink = greeted();
    const older = sink.take(10_000, 10, 1 << 20);
    const abort = new AbortController();
    const newer = sink.take(10_000, 10, 1 << 20, abort.signal);
    await expect(older).resolves.toEqual({ frames: [], lastSeq: 0 });
    abort.abort();
    await expect(newer).resolves.toEqual({ frames: [], lastSeq: 0 });
    sink.send(msg(1));
    await expect(sink.take(1000, 10, 1 << 20)).resolves.toEqual({ frames: [msg(1)], lastSeq: 1 });
  });

  it('routes what a POST produces, and the answers to its sends, to its collector', async () => {
    const sink = greeted();
    const collector = new AnswerCollector();
    sink.collect(collector, () => {
      collector.expect('r1');
      collector.expect('r2');
      sink.send('{"type":"error","msg_id":"r1","payload":{"code":"forbidden","message":"no"}}');
      sink.send('{"type":"pong"}');
    });
    const settled = collector.settled(10_000, sink.ended);
    sink.send(msg(1)); // not an answer: queued for the polls
    sink.send('{"type":"ack","msg_id":"X","payload":{"ref":"r2","conversation_id":"c","ts":1}}');
    await settled;
    sink.release(collector);
    expect(collector.frames.map((f) => JSON.parse(f).type)).toEqual(['error', 'pong', 'ack']);
    expect(collector.unanswered).toBe(0);
    sink.send('{"type":"ack","msg_id":"Y","payload":{"ref":"r3","conversation_id":"c","ts":1}}');
    const take = await sink.take(1000, 10, 1 << 20);
    expect(take.frames).toEqual([
      msg(1),
      '{"type":"ack","msg_id":"Y","payload":{"ref":"r3","conversation_id":"c","ts":1}}',
    ]);
  });

  it('emits close once, after the call, and pongs its pings while open', async () => {
    const sink = greeted();
    const pongs: number[] = [];
    sink.on('pong', () => pongs.push(1));
    sink.ping();
    const closes: number[] = [];
    sink.once('close', (code: number) => closes.push(code));
    sink.close(4001);
    sink.close(1000);
    expect(closes).toEqual([]);
    await new Promise((r) => process.nextTick(r));
    expect(closes).toEqual([4001]);
    sink.ping();
    expect(pongs).toHaveLength(1);
    expect(sink.readyState).toBe(3);
    sink.send(msg(1));
    expect(sink.bufferedAmount).toBe(0);
  });
});
