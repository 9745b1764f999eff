import { MemoryBusDriver } from '../bus/drivers/memory-bus.driver';
import { Config } from '../config/config.module';
import { DirectoryUnavailableError } from '../directory/conversation-directory';
import { BuiltinDirectoryDriver } from '../directory/drivers/builtin-directory.driver';
import { MemoryDirectoryStoreDriver } from '../directory/drivers/memory-directory-store.driver';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryOutboxDriver } from '../outbox/drivers/memory-outbox.driver';
import { IngressMessage } from '../protocol/envelope';
import { MemorySessionDriver } from '../session/drivers/memory-session.driver';
import { NodeChannel, PushBatch } from '../session/node-channel';
import { RouterService } from './router.service';
import { ReceiptRouting } from './receipt-routing';
import { MemoryMarkerStoreDriver } from '../receipts/drivers/memory-marker-store.driver';

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

async function setup(poisonMaxAttempts = 3, broadcastPerNode = 0) {
  const store = new MemoryDirectoryStoreDriver();
  await store.put('c', ['a', 'b', 'z']);
  const outbox = new MemoryOutboxDriver(60_000);
  const sessions = new MemorySessionDriver(60_000);
  const channel = new RecordingChannel();
  const bus = new MemoryBusDriver(1);
  const directory = new BuiltinDirectoryDriver(store);
  const metrics = new MetricsService();
  const config = {
    router: { poisonMaxAttempts, broadcastPerNode },
    receipts: { fanoutMaxMembers: 100 },
    // No member cache: these tests make the directory fail between batches (the cache: router-members.spec.ts).
    directory: { kind: 'http' },
  } as Config;
  const receipts = new ReceiptRouting(outbox, new MemoryMarkerStoreDriver(), config);
  const router = new RouterService(bus, directory, outbox, sessions, channel, metrics, config, receipts);
  const now = Date.now();
  await sessions.registerNode('n1');
  await sessions.registerNode('n2');
  await sessions.add('a', { connId: 'a1', node: 'n1', connectedAt: now, lastPing: now });
  await sessions.add('a', { connId: 'a2', node: 'n1', connectedAt: now, lastPing: now });
  await sessions.add('b', { connId: 'b1', node: 'n2', connectedAt: now, lastPing: now });
  return { router, outbox, channel, sessions, store, bus, directory, metrics };
}

/** The embedded engine's channel: one node, reachable without the session map. */
class SingleNodeChannel extends RecordingChannel {
  override singleNode(): string | null {
    return 'n1';
  }
}

describe('RouterService', () => {
  it('with a single-node channel, pushes every delivery to that node in one batch, with no session lookup', async () => {
    const { outbox, sessions, directory, metrics, bus } = await setup();
    const channel = new SingleNodeChannel();
    const config = { router: { poisonMaxAttempts: 3 }, directory: { kind: 'http' } } as Config;
    const receipts = new ReceiptRouting(outbox, new MemoryMarkerStoreDriver(), config);
    const router = new RouterService(bus, directory, outbox, sessions, channel, metrics, config, receipts);
    const lookup = jest.spyOn(sessions, 'lookup');
    // m1 twice in one batch (a redelivered record): one envelope, the same seqs.
    await router.route({ partition: 0, messages: [msg('m1'), msg('m2', 'b'), msg('m1')] });
    expect(lookup).not.toHaveBeenCalled();
    expect(channel.published).toHaveLength(1);
    const [batches] = channel.published;
    expect([...batches.keys()]).toEqual(['n1']);
    const n1 = batches.get('n1')!;
    expect(n1.envelopes.map((e) => e.id)).toEqual(['m1', 'm2']);
    // z has no session: the gateway skips users without a connection, the outbox keeps theirs.
    expect(n1.deliveries).toEqual([
      { u: 'a', s: 1, e: 0 },
      { u: 'b', s: 1, e: 0 },
      { u: 'z', s: 1, e: 0 },
      { u: 'a', s: 2, e: 1 },
      { u: 'b', s: 2, e: 1 },
      { u: 'z', s: 2, e: 1 },
      { u: 'a', s: 1, e: 0 },
      { u: 'b', s: 1, e: 0 },
      { u: 'z', s: 1, e: 0 },
    ]);
    // The outbox's JSON of each envelope comes along, exactly what the gateway would serialise.
    expect(n1.json).toEqual(n1.envelopes.map((e) => JSON.stringify(e)));
  });

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

  it('pushes to a connection that registered while the outbox committed (the early session lookup is redone)', async () => {
    const { router, outbox, channel, sessions, metrics } = await setup();
    const append = outbox.append.bind(outbox);
    jest.spyOn(outbox, 'append').mockImplementation(async (deliveries) => {
      await new Promise((r) => setImmediate(r)); // the early lookup ran: z has no connection
      const now = Date.now();
      await sessions.add('z', { connId: 'z1', node: 'n2', connectedAt: now, lastPing: now });
      return append(deliveries);
    });
    await router.route({ partition: 0, messages: [msg('m1')] });
    expect(
      channel.published[0]
        .get('n2')!
        .deliveries.map((d) => d.u)
        .sort(),
    ).toEqual(['b', 'z']);
    const outcomes = await metrics.registry.getSingleMetricAsString('relay_router_session_prefetch_total');
    expect(outcomes).toContain('outcome="looked_up_again"} 1');
  });

  it('broadcasts a batch with many recipients per node to every live node, read after the commit, without a session lookup', async () => {
    const { router, outbox, channel, sessions, metrics } = await setup(3, 1);
    // No node count known yet: the first batch is looked up (and reads the live nodes: n1, n2).
    await router.route({ partition: 0, messages: [msg('m0')] });
    expect([...channel.published[0].keys()].sort()).toEqual(['n1', 'n2']);
    expect(channel.published[0].get('n1')!.deliveries.map((d) => d.u)).toEqual(['a']);
    const lookup = jest.spyOn(sessions, 'lookup');
    const append = outbox.append.bind(outbox);
    jest.spyOn(outbox, 'append').mockImplementation(async (deliveries) => {
      await sessions.registerNode('n3'); // a gateway that started during the commit
      return append(deliveries);
    });
    await router.route({ partition: 0, messages: [msg('m1')] });
    expect(lookup).not.toHaveBeenCalled();
    const batches = channel.published[1];
    expect([...batches.keys()].sort()).toEqual(['n1', 'n2', 'n3']);
    for (const b of batches.values()) {
      expect(b.envelopes.map((e) => e.id)).toEqual(['m1']);
      expect(b.deliveries.map((d) => [d.u, d.s]).sort()).toEqual([
        ['a', 2],
        ['b', 2],
        ['z', 2],
      ]);
      expect(b.json).toBeUndefined(); // the outbox's JSON never leaves the process
    }
    expect(await metrics.registry.getSingleMetricAsString('relay_router_broadcast_batches_total')).toContain(
      'relay_router_broadcast_batches_total 1',
    );
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

/** An array nesting `levels` deep, built without recursion; JSON.stringify overflows the stack on it. */
function nested(levels: number): unknown {
  let v: unknown = 'core';
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

async function counter(metric: { get(): Promise<{ values: { labels: object; value: number }[] }> }) {
  const { values } = await metric.get();
  return Object.fromEntries(values.map((v) => [Object.values(v.labels).join(','), v.value]));
}

/** A MySQL-like error (the shape mysql2 gives, as TypeORM wraps it). */
function dbError(message: string, fields: Record<string, unknown>): Error {
  return Object.assign(new Error(message), { driverError: Object.assign(new Error(message), fields) });
}

describe('RouterService quarantine', () => {
  const ids = async (outbox: MemoryOutboxDriver, user: string) =>
    (await outbox.readAfter(user, 0, 100)).map((d) => d.envelope.id);

  it('dead-letters a poison message in the middle of a batch; the others are routed, in order', async () => {
    const { router, outbox, bus, metrics } = await setup();
    const poison: IngressMessage = { ...msg('p'), body: nested(10_000) };
    await router.route({ partition: 0, messages: [msg('m1'), poison, msg('m3')] });
    for (const user of ['a', 'b', 'z']) expect(await ids(outbox, user)).toEqual(['m1', 'm3']);
    const dead = bus.deadLetters();
    expect(dead).toHaveLength(1);
    expect((dead[0].message as IngressMessage).id).toBe('p');
    expect(dead[0].partition).toBe(0);
    expect(dead[0].reason).toMatch(/^unserializable: RangeError/);
    expect(await counter(metrics.deadLetters)).toEqual({ unserializable: 1 });
    expect(await counter(metrics.contained)).toEqual({ router: 1 });
  });

  it('gives a failing message exactly POISON_MAX_ATTEMPTS attempts, then dead-letters it with the store error', async () => {
    const { router, outbox, bus, metrics } = await setup(2);
    const append = outbox.append.bind(outbox);
    let attemptsOfBad = 0;
    jest.spyOn(outbox, 'append').mockImplementation(async (deliveries) => {
      if (deliveries.some((d) => d.envelope.id === 'bad')) {
        if (deliveries.length === 3) attemptsOfBad++; // alone: one message x three members
        throw dbError("Data too long for column 'x'", { errno: 1406, code: 'ER_DATA_TOO_LONG' });
      }
      return append(deliveries);
    });
    await router.route({ partition: 3, messages: [msg('m1'), msg('bad'), msg('m3'), msg('m4')] });
    expect(attemptsOfBad).toBe(2);
    expect(await ids(outbox, 'b')).toEqual(['m1', 'm3', 'm4']);
    expect(bus.deadLetters().map((d) => [(d.message as IngressMessage).id, d.partition])).toEqual([
      ['bad', 3],
    ]);
    expect(bus.deadLetters()[0].reason).toMatch(/^outbox_rejected: Error: Data too long/);
    expect(await counter(metrics.deadLetters)).toEqual({ outbox_rejected: 1 });
  });

  it('routes everything when a failure does not repeat on the retry one message at a time', async () => {
    const { router, outbox, bus } = await setup();
    const append = outbox.append.bind(outbox);
    jest
      .spyOn(outbox, 'append')
      .mockImplementationOnce(async () => {
        throw new Error('something odd, once');
      })
      .mockImplementation(append);
    await router.route({ partition: 0, messages: [msg('m1'), msg('m2')] });
    expect(await ids(outbox, 'a')).toEqual(['m1', 'm2']);
    expect(bus.deadLetters()).toHaveLength(0);
  });

  it('rethrows an outage found by pinging (outbox ping fails): nothing dead-lettered, no message-by-message routing', async () => {
    const { router, outbox, directory, bus, metrics } = await setup();
    jest.spyOn(outbox, 'append').mockRejectedValue(new Error('opaque failure'));
    jest.spyOn(outbox, 'ping').mockRejectedValue(new Error('outbox down'));
    const members = jest.spyOn(directory, 'members');
    for (const messages of [
      [msg('m1'), msg('m2')],
      [msg('m1'), { ...msg('p'), body: nested(10_000) }],
    ]) {
      await expect(router.route({ partition: 0, messages })).rejects.toThrow(/opaque|Maximum call stack/);
    }
    expect(members).toHaveBeenCalledTimes(2); // one batch attempt each, never one message at a time
    expect(bus.deadLetters()).toHaveLength(0);
    expect(await counter(metrics.deadLetters)).toEqual({});
  });

  it('rethrows an outage the error names (connection lost, lock wait timeout, directory unavailable) without pinging', async () => {
    const { router, outbox, directory, bus } = await setup();
    const ping = jest.spyOn(outbox, 'ping');
    const failures: [string, () => void][] = [
      [
        'lost',
        () =>
          jest
            .spyOn(outbox, 'append')
            .mockRejectedValueOnce(
              dbError('Connection lost', { code: 'PROTOCOL_CONNECTION_LOST', fatal: true }),
            ),
      ],
      [
        'lock',
        () =>
          jest
            .spyOn(outbox, 'append')
            .mockRejectedValueOnce(dbError('Lock wait timeout exceeded', { errno: 1205 })),
      ],
      [
        'directory',
        () =>
          jest
            .spyOn(directory, 'members')
            .mockRejectedValueOnce(new DirectoryUnavailableError('conversation service answered 503')),
      ],
    ];
    for (const [, arrange] of failures) {
      arrange();
      await expect(router.route({ partition: 0, messages: [msg('m1')] })).rejects.toThrow();
    }
    expect(ping).not.toHaveBeenCalled();
    expect(bus.deadLetters()).toHaveLength(0);
    await router.route({ partition: 0, messages: [msg('m1')] }); // redelivered once the outage is over
    expect(await ids(outbox, 'z')).toEqual(['m1']);
  });

  it('stops quarantining and rethrows when an outage starts while it routes one message at a time', async () => {
    const { router, outbox, directory, bus } = await setup();
    const poison: IngressMessage = { ...msg('p'), body: nested(10_000) };
    const members = directory.members.bind(directory);
    let calls = 0;
    jest.spyOn(directory, 'members').mockImplementation(async (c) => {
      // The batch attempt and the first single-message attempt reach the directory; then it dies.
      if (++calls > 2) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return members(c);
    });
    await expect(router.route({ partition: 0, messages: [poison, msg('m2')] })).rejects.toThrow();
    expect(bus.deadLetters()).toHaveLength(0);
    expect(await ids(outbox, 'a')).toEqual([]);
  });

  it('treats a failed dead-letter write as an outage: rethrown, not counted; the redelivery quarantines once', async () => {
    const { router, outbox, bus, metrics } = await setup(1);
    const poison: IngressMessage = { ...msg('p'), body: nested(10_000) };
    const batch = { partition: 0, messages: [msg('m1'), poison, msg('m3')] };
    bus.setAvailable(false);
    await expect(router.route(batch)).rejects.toThrow(/unavailable/);
    expect(await counter(metrics.deadLetters)).toEqual({});
    expect(await ids(outbox, 'a')).toEqual(['m1']); // m3 waits behind the poison, like the partition
    bus.setAvailable(true);
    await router.route(batch);
    expect(await ids(outbox, 'a')).toEqual(['m1', 'm3']);
    expect(bus.deadLetters()).toHaveLength(1);
    expect(await counter(metrics.deadLetters)).toEqual({ unserializable: 1 });
  });
});
