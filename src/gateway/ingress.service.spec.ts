import { WebSocket } from 'ws';
import { MessageBus } from '../bus/message-bus';
import { ConversationDirectory } from '../directory/conversation-directory';
import { DirectoryMembershipDriver } from '../directory/drivers/directory-membership.driver';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryOutboxDriver } from '../outbox/drivers/memory-outbox.driver';
import { IngressMessage } from '../protocol/envelope';
import { Connection } from './connection';
import { MemoryDedupeDriver } from '../session/drivers/memory-dedupe.driver';
import { IngressService } from './ingress.service';
import { IngressPipeline } from './ingress-pipeline';

/** A bus whose publishes the test settles by hand, in any order. */
class ManualBus {
  calls: { message: IngressMessage; resolve: () => void; reject: (e: Error) => void }[] = [];
  publish(message: IngressMessage): Promise<void> {
    return new Promise((resolve, reject) => this.calls.push({ message, resolve, reject }));
  }
}

const directory = {
  members: async (ids: string[]) => new Map(ids.map((id) => [id, ['u']])),
} as unknown as ConversationDirectory;

function setup() {
  const bus = new ManualBus();
  const sent: { type: string; msg_id?: string; payload: { ref?: string; code?: string } }[] = [];
  const ws = { readyState: WebSocket.OPEN, bufferedAmount: 0, send: (t: string) => sent.push(JSON.parse(t)) };
  const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, new MemoryOutboxDriver(1000), {
    sendRatePerSec: 1000,
    sendBurst: 1000,
    frameRatePerSec: 1000,
    frameBurst: 1000,
    floodCloseAfter: 100,
    maxBufferedBytes: 16 << 20,
  });
  const ingress = new IngressService(
    new IngressPipeline(
      bus as unknown as MessageBus,
      new DirectoryMembershipDriver(directory),
      new MemoryDedupeDriver(60_000),
    ),
    new MetricsService(),
  );
  const send = (ref: string) =>
    ingress.handleSend(conn, { type: 'send', msg_id: ref, payload: { conversation_id: 'c', body: ref } });
  return { bus, sent, send };
}

async function until(cond: () => boolean) {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setImmediate(r));
  expect(cond()).toBe(true);
}

describe('IngressService', () => {
  it('issues publishes in frame order and acks each only when the bus resolved it', async () => {
    const { bus, sent, send } = setup();
    ['a', 'b', 'c'].forEach(send);
    await until(() => bus.calls.length === 3);
    expect(bus.calls.map((c) => c.message.ref)).toEqual(['a', 'b', 'c']);
    expect(sent).toHaveLength(0);
    bus.calls[1].resolve();
    await until(() => sent.length === 1);
    expect(sent[0]).toMatchObject({ type: 'ack', payload: { ref: 'b' } });
  });

  it('after a failed publish, refuses later frames until its publishes drained, so a retry cannot be overtaken', async () => {
    const { bus, sent, send } = setup();
    send('a');
    send('b');
    await until(() => bus.calls.length === 2);
    bus.calls[0].reject(new Error('broker down'));
    await until(() => sent.length === 1);
    send('c'); // b is still in flight: c must not be published ahead of a's retry
    await until(() => sent.length === 2);
    expect(sent.map((f) => [f.type, f.msg_id ?? f.payload.ref, f.payload.code])).toEqual([
      ['error', 'a', 'unavailable'],
      ['error', 'c', 'unavailable'],
    ]);
    expect(bus.calls).toHaveLength(2);
    bus.calls[1].resolve();
    await until(() => sent.length === 3);
    send('a'); // the retry, same ref: same id, published now
    await until(() => bus.calls.length === 3);
    expect(bus.calls[2].message.id).toBe(bus.calls[0].message.id);
  });
});

/** A directory whose calls the test answers by hand. */
class ManualDirectory {
  calls: { ids: string[]; resolve: () => void; reject: (e: Error) => void }[] = [];
  members(ids: string[]): Promise<Map<string, string[] | null>> {
    return new Promise((resolve, reject) =>
      this.calls.push({ ids, resolve: () => resolve(new Map(ids.map((id) => [id, ['u']]))), reject }),
    );
  }
}

function setupWith(dir: ConversationDirectory, dedupe = new MemoryDedupeDriver(60_000)) {
  const bus = new ManualBus();
  const sent: { type: string; msg_id?: string; payload: { ref?: string; code?: string } }[] = [];
  const ws = { readyState: WebSocket.OPEN, bufferedAmount: 0, send: (t: string) => sent.push(JSON.parse(t)) };
  const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, new MemoryOutboxDriver(1000), {
    sendRatePerSec: 1000,
    sendBurst: 1000,
    frameRatePerSec: 1000,
    frameBurst: 1000,
    floodCloseAfter: 100,
    maxBufferedBytes: 16 << 20,
  });
  const ingress = new IngressService(
    new IngressPipeline(bus as unknown as MessageBus, new DirectoryMembershipDriver(dir), dedupe),
    new MetricsService(),
  );
  const send = (ref: string) =>
    ingress.handleSend(conn, { type: 'send', msg_id: ref, payload: { conversation_id: 'c', body: ref } });
  const outcomes = () =>
    sent.map((f) => `${f.type}:${f.msg_id && f.type === 'error' ? f.msg_id : f.payload.ref}`);
  return { bus, sent, send, outcomes, conn };
}

describe('IngressService per-sender order on every failure path', () => {
  it('a directory failure refuses the sends received before it was detected, even when their own check passed', async () => {
    const dir = new ManualDirectory();
    const { bus, send, outcomes } = setupWith(dir as unknown as ConversationDirectory);
    send('a');
    await until(() => dir.calls.length === 1);
    send('b'); // waits for the next directory call: the first one is in flight
    dir.calls[0].reject(new Error('conversation service answered 503'));
    await until(() => dir.calls.length === 2);
    dir.calls[1].resolve(); // b's own check passes
    await until(() => outcomes().length === 2);
    expect(outcomes()).toEqual(['error:a', 'error:b']);
    expect(bus.calls).toHaveLength(0);
    // The retries, received after the failure, go through in order.
    send('a');
    send('b');
    await until(() => dir.calls.length === 3);
    dir.calls[2].resolve();
    await until(() => bus.calls.length === 2);
    expect(bus.calls.map((c) => c.message.ref)).toEqual(['a', 'b']);
    bus.calls.forEach((c) => c.resolve());
    await until(() => outcomes().length === 4);
    expect(outcomes()).toEqual(['error:a', 'error:b', 'ack:a', 'ack:b']);
  });

  it('a dedupe store failure refuses the later sends already received', async () => {
    const dedupe = new MemoryDedupeDriver(60_000);
    const reserve = dedupe.reserve.bind(dedupe);
    let failNext = true;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    dedupe.reserve = async (...args) => {
      if (failNext) {
        failNext = false;
        await gate;
        throw new Error('redis timeout');
      }
      return reserve(...args);
    };
    const { bus, send, outcomes } = setupWith(directory, dedupe);
    send('a');
    send('b');
    send('c');
    await new Promise((r) => setImmediate(r));
    release();
    await until(() => outcomes().length === 3);
    expect(outcomes()).toEqual(['error:a', 'error:b', 'error:c']);
    expect(bus.calls).toHaveLength(0);
    send('a');
    send('b');
    send('c');
    await until(() => bus.calls.length === 3);
    expect(bus.calls.map((c) => c.message.ref)).toEqual(['a', 'b', 'c']);
  });

  it('sends received after the failure was detected are processed normally, and refusals do not cascade', async () => {
    const dir = new ManualDirectory();
    const { bus, send, outcomes, conn } = setupWith(dir as unknown as ConversationDirectory);
    send('a');
    await until(() => dir.calls.length === 1);
    send('b');
    dir.calls[0].reject(new Error('down'));
    await until(() => outcomes().length === 1); // a refused; b waits for its own check
    send('a'); // the retry of a arrives before b was refused
    await until(() => dir.calls.length === 2);
    dir.calls[1].resolve();
    await until(() => bus.calls.length === 1);
    expect(outcomes()).toEqual(['error:a', 'error:b']);
    expect(bus.calls[0].message.ref).toBe('a');
    expect(conn.refusals).toEqual([]); // the range is gone once passed
  });

  it('a publish failure refuses the later sends whose publish was not issued yet', async () => {
    const dir = new ManualDirectory();
    const { bus, send, outcomes } = setupWith(dir as unknown as ConversationDirectory);
    send('a');
    await until(() => dir.calls.length === 1);
    send('b');
    dir.calls[0].resolve();
    await until(() => bus.calls.length === 1);
    bus.calls[0].reject(new Error('broker down')); // b is still in its check
    await until(() => outcomes().length === 1);
    await until(() => dir.calls.length === 2);
    dir.calls[1].resolve();
    await until(() => outcomes().length === 2);
    expect(outcomes()).toEqual(['error:a', 'error:b']);
    expect(bus.calls).toHaveLength(1);
  });
});

describe('IngressService containment', () => {
  it('an exception while answering one send is contained: the connection closes 1011, the chain keeps going', async () => {
    const { bus, send, conn } = setupWith(directory);
    const closed: number[] = [];
    conn.close = (code: number) => void closed.push(code);
    const realSendRaw = conn.sendRaw.bind(conn);
    conn.sendRaw = () => {
      throw new Error('socket exploded');
    };
    send('a');
    await until(() => bus.calls.length === 1);
    bus.calls[0].resolve(); // the ack write throws
    await until(() => closed.length === 1);
    expect(closed).toEqual([1011]);
    conn.sendRaw = realSendRaw;
    send('b'); // the tail was not left rejected
    await until(() => bus.calls.length === 2);
    expect(bus.calls[1].message.ref).toBe('b');
  });
});

describe('IngressPipeline checks', () => {
  it('asks the directory and the dedupe store at once; a refused send gives its ref back', async () => {
    const dir = new ManualDirectory();
    const dedupe = new MemoryDedupeDriver(60_000);
    const reserved: string[] = [];
    const reserve = dedupe.reserve.bind(dedupe);
    dedupe.reserve = async (...args) => {
      reserved.push(args[1]);
      return reserve(...args);
    };
    const pipeline = new IngressPipeline(
      new ManualBus() as unknown as MessageBus,
      new DirectoryMembershipDriver(dir as unknown as ConversationDirectory),
      dedupe,
    );
    const outsider = pipeline.prepare({ from: 'x', conversationId: 'c', ref: 'r1', body: 1 });
    await until(() => dir.calls.length === 1);
    expect(reserved).toEqual(['r1']); // reserved while the membership check is in flight
    dir.calls[0].resolve(); // members: ['u']
    expect(await outsider).toMatchObject({ ok: false, refusal: { code: 'forbidden' } });
    // The ref is free again: a later send with it gets its own id, not the refused attempt's.
    const candidate = { id: 'm-new', ts: 1, conversation_id: 'd' };
    expect(await dedupe.reserve('x', 'r1', candidate)).toBeNull();
  });
});
