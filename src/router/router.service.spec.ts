import { MemoryBusDriver } from '../bus/drivers/memory-bus.driver';
import { BuiltinDirectoryDriver } from '../directory/drivers/builtin-directory.driver';
import { MemoryDirectoryStoreDriver } from '../directory/drivers/memory-directory-store.driver';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryOutboxDriver } from '../outbox/drivers/memory-outbox.driver';
import { IngressMessage } from '../protocol/envelope';
import { MemorySessionDriver } from '../session/drivers/memory-session.driver';
import { NodeChannel, PushBatch } from '../session/node-channel';
import { RouterService } from './router.service';

/** A channel that records what would be published and can be made to fail. */
class RecordingChannel extends NodeChannel {
  published: Map<string, PushBatch>[] = [];
  failing = false;
  async publish(batches: Map<string, PushBatch>): Promise<void> {
    if (this.failing) throw new Error('redis down');
    this.published.push(batches);
  }
  async subscribe(): Promise<void> {}
  async unsubscribe(): Promise<void> {}
  async ping(): Promise<void> {}
}

const msg = (id: string, from = 'a'): IngressMessage => ({
  id,
  conversation_id: 'c',
  from,
  ts: 1,
  body: id,
  ref: id,
});

async function setup() {
  const store = new MemoryDirectoryStoreDriver();
  await store.put('c', ['a', 'b', 'z']);
  const outbox = new MemoryOutboxDriver(60_000);
  const sessions = new MemorySessionDriver(60_000);
  const channel = new RecordingChannel();
  const router = new RouterService(
    new MemoryBusDriver(1),
    new BuiltinDirectoryDriver(store),
    outbox,
    sessions,
    channel,
    new MetricsService(),
  );
  const now = Date.now();
  await sessions.registerNode('n1');
  await sessions.registerNode('n2');
  await sessions.add('a', { connId: 'a1', node: 'n1', connectedAt: now, lastPing: now });
  await sessions.add('a', { connId: 'a2', node: 'n1', connectedAt: now, lastPing: now });
  await sessions.add('b', { connId: 'b1', node: 'n2', connectedAt: now, lastPing: now });
  return { router, outbox, channel, sessions, store };
}

describe('RouterService', () => {
  it('writes every member a delivery, then publishes once per live node with each envelope once', async () => {
    const { router, outbox, channel } = await setup();
    await router.route({ partition: 0, messages: [msg('m1'), msg('m2', 'b')] });
    for (const user of ['a', 'b', 'z']) {
      expect((await outbox.readAfter(user, 0, 10)).map((d) => d.envelope.id)).toEqual(['m1', 'm2']);
    }
    expect(channel.published).toHaveLength(1);
    const [batches] = channel.published;
    expect([...batches.keys()].sort()).toEqual(['n1', 'n2']);
    const n1 = batches.get('n1')!;
    expect(n1.envelopes.map((e) => e.id)).toEqual(['m1', 'm2']);
    // a has two connections on n1: the node fans out locally, so one delivery per (user, message).
    expect(n1.deliveries).toEqual([
      { u: 'a', s: 1, e: 0 },
      { u: 'a', s: 2, e: 1 },
    ]);
  });

  it('writes a huge fan-out in several bounded appends, in order', async () => {
    const { router, outbox, store } = await setup();
    await store.put(
      'c',
      Array.from({ length: 12_000 }, (_, i) => `m${i}`),
    );
    const append = jest.spyOn(outbox, 'append');
    await router.route({ partition: 0, messages: [msg('big1'), msg('big2')] });
    expect(append.mock.calls.map(([d]) => d.length)).toEqual([5000, 5000, 5000, 5000, 4000]);
    expect((await outbox.readAfter('m11999', 0, 10)).map((d) => [d.seq, d.envelope.id])).toEqual([
      [1, 'big1'],
      [2, 'big2'],
    ]);
  });

  it('is idempotent under redelivery: same seqs, nothing new in the outbox', async () => {
    const { router, outbox } = await setup();
    await router.route({ partition: 0, messages: [msg('m1')] });
    await router.route({ partition: 0, messages: [msg('m1'), msg('m2')] });
    expect((await outbox.readAfter('b', 0, 10)).map((d) => [d.seq, d.envelope.id])).toEqual([
      [1, 'm1'],
      [2, 'm2'],
    ]);
  });

  it('does not fail the batch when the push fails, and tells the missed nodes to resync on the next push', async () => {
    const { router, outbox, channel } = await setup();
    channel.failing = true;
    await router.route({ partition: 0, messages: [msg('m1')] });
    expect((await outbox.readAfter('a', 0, 10)).map((d) => d.envelope.id)).toEqual(['m1']);
    channel.failing = false;
    await router.route({ partition: 0, messages: [msg('m2')] });
    const [batches] = channel.published;
    expect(batches.get('n1')).toMatchObject({ resync: true });
    expect(batches.get('n2')).toMatchObject({ resync: true });
    await router.route({ partition: 0, messages: [msg('m3')] });
    expect(channel.published[1].get('n1')?.resync).toBeUndefined();
  });

  it('retries the resync on its own when no further traffic comes', async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick'] });
    try {
      const { router, channel } = await setup();
      channel.failing = true;
      await router.route({ partition: 0, messages: [msg('m1')] });
      channel.failing = false;
      await jest.advanceTimersByTimeAsync(1_000);
      expect(channel.published).toHaveLength(1);
      const [batches] = channel.published;
      expect([...batches.values()].every((b) => b.resync && b.deliveries.length === 0)).toBe(true);
      expect([...batches.keys()].sort()).toEqual(['n1', 'n2']);
    } finally {
      jest.useRealTimers();
    }
  });
});
