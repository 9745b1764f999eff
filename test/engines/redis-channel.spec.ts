import { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { Config } from '../../src/config/config.module';
import { RedisConnections } from '../../src/redis/redis.module';
import { RedisChannelDriver } from '../../src/session/drivers/redis-channel.driver';
import { NodeSubscriber, PushBatch } from '../../src/session/node-channel';
import { nodeChannelFactory } from '../../src/session/session.module-factory';
import { waitFor } from '../support/wait-for';

/**
 * RedisChannelDriver against the real Redis of scripts/infra.sh (engines project globalSetup).
 * Each simulated node has its own RedisConnections (and node id); channels carry a per-run prefix.
 */
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `relay-test:${randomUUID()}:`;

jest.setTimeout(20_000);

const opened: RedisConnections[] = [];
const drivers: RedisChannelDriver[] = [];
let router: RedisConnections;
let redis: Redis;

function node(name: string): { nodeId: string; connections: RedisConnections; channel: RedisChannelDriver } {
  const nodeId = `${name}-${randomUUID().slice(0, 8)}`;
  const config = { nodeId, redis: { url: REDIS_URL, keyPrefix: PREFIX } };
  const connections = new RedisConnections(config as unknown as Config);
  const channel = new RedisChannelDriver(connections);
  opened.push(connections);
  drivers.push(channel);
  return { nodeId, connections, channel };
}

class Recorder implements NodeSubscriber {
  readonly batches: PushBatch[] = [];
  resyncs = 0;
  /** Subscriber count of the node's channel as Redis saw it at the moment onResync ran. */
  readonly subscribersAtResync: Promise<unknown>[] = [];
  constructor(private readonly channelName?: string) {}
  onBatch(batch: PushBatch): void {
    this.batches.push(batch);
  }
  onResync(): void {
    this.resyncs++;
    if (this.channelName) this.subscribersAtResync.push(redis.pubsub('NUMSUB', this.channelName));
  }
}

function batch(tag: string, users: string[] = ['u1']): PushBatch {
  return {
    epoch: 'e1',
    envelopes: [{ id: `m-${tag}`, conversation_id: 'c1', from: 'alice', ts: 1, body: { tag } }],
    deliveries: users.map((u, i) => ({ u, s: i + 1, e: 0 })),
  };
}

const channelOf = (nodeId: string): string => `${PREFIX}node:{${nodeId}}`;

async function subscriberCount(nodeId: string): Promise<number> {
  const [, n] = (await redis.pubsub('NUMSUB', channelOf(nodeId))) as [string, number];
  return n;
}

/** Kills a connection server-side, found by the name RedisConnections gave it. */
async function killConnection(name: string): Promise<void> {
  const list = (await redis.client('LIST')) as string;
  const line = list.split('\n').find((l) => l.includes(` name=${name} `));
  if (!line) throw new Error(`no connection named ${name}`);
  const id = /\bid=(\d+)/.exec(line)![1];
  expect(await redis.client('KILL', 'ID', id)).toBe(1);
}

beforeAll(async () => {
  ({ connections: router } = node('router'));
  redis = router.command as Redis;
  await redis.ping();
});

afterAll(async () => {
  await Promise.allSettled(drivers.map((d) => d.unsubscribe()));
  await Promise.allSettled(opened.map((c) => c.onApplicationShutdown()));
});

afterEach(() => jest.restoreAllMocks());

describe('RedisChannelDriver', () => {
  it('one pipelined round trip publishes to every node; each subscribed node gets exactly its batch, once', async () => {
    const { connections, channel: publisher } = node('router');
    const a = node('gw-a');
    const b = node('gw-b');
    const ra = new Recorder();
    const rb = new Recorder();
    await a.channel.subscribe(a.nodeId, ra);
    await b.channel.subscribe(b.nodeId, rb);

    const pipeline = jest.spyOn(connections.command, 'pipeline');
    const publish = jest.spyOn(connections.command, 'publish');
    const forA = batch('a', ['alice', 'ann']);
    const forB = batch('b', ['bob']);
    await publisher.publish(
      new Map([
        [a.nodeId, forA],
        [b.nodeId, forB],
        [`not-subscribed-${randomUUID()}`, batch('nobody')], // a node that died: no error
      ]),
    );
    expect(pipeline).toHaveBeenCalledTimes(1);
    expect(publish).not.toHaveBeenCalled(); // no standalone PUBLISH: everything went through the pipeline

    await waitFor(() => ra.batches.length >= 1 && rb.batches.length >= 1, 3_000, 'both nodes receive');
    // Pub/sub is ordered per connection: once a later marker arrived, nothing else can still be on its way.
    await publisher.publish(
      new Map([
        [a.nodeId, batch('marker-a')],
        [b.nodeId, batch('marker-b')],
      ]),
    );
    await waitFor(() => ra.batches.length >= 2 && rb.batches.length >= 2, 3_000, 'markers');
    expect(ra.batches).toEqual([forA, batch('marker-a')]);
    expect(rb.batches).toEqual([forB, batch('marker-b')]);
    expect(ra.resyncs + rb.resyncs).toBe(0); // the initial connect is not a resync
  });

  it('publishing nothing sends nothing', async () => {
    const { connections, channel } = node('router');
    const pipeline = jest.spyOn(connections.command, 'pipeline');
    await channel.publish(new Map());
    expect(pipeline).not.toHaveBeenCalled();
  });

  it('logs and ignores malformed messages, and survives a throwing handler', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const a = node('gw-a');
    const received: PushBatch[] = [];
    let throwNext = true;
    await a.channel.subscribe(a.nodeId, {
      onBatch: (b) => {
        received.push(b);
        if (throwNext) {
          throwNext = false;
          throw new Error('handler bug');
        }
      },
      onResync: () => undefined,
    });
    const ch = channelOf(a.nodeId);
    const outOfRange = { ...batch('x'), deliveries: [{ u: 'u1', s: 1, e: 5 }] };
    for (const raw of ['not json', 'null', '42', '{"epoch":1}', JSON.stringify(outOfRange)]) {
      expect(await redis.publish(ch, raw)).toBe(1);
    }
    await redis.publish(ch, JSON.stringify(batch('first')));
    await redis.publish(ch, JSON.stringify(batch('second')));
    await waitFor(() => received.length >= 2, 3_000, 'valid batches after the malformed ones');
    expect(received).toEqual([batch('first'), batch('second')]);
    expect(warn.mock.calls.filter(([m]) => String(m).includes('malformed push batch'))).toHaveLength(5);
    expect(error.mock.calls.some(([m]) => String(m).includes('handler bug'))).toBe(true);
  });

  it('calls onResync after the subscriber connection is killed, once it is subscribed again', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    const { channel: publisher } = node('router');
    const a = node('gw-a');
    const rec = new Recorder(channelOf(a.nodeId));
    await a.channel.subscribe(a.nodeId, rec);
    await publisher.publish(new Map([[a.nodeId, batch('before')]]));
    await waitFor(() => rec.batches.length === 1, 3_000, 'delivery before the kill');
    expect(rec.resyncs).toBe(0);

    await killConnection(`relay:${a.nodeId}:sub`);
    await waitFor(() => rec.resyncs === 1, 5_000, 'onResync after reconnect');
    // onResync came only once Redis had the channel subscribed again: a refill cannot miss a push.
    expect(await rec.subscribersAtResync[0]).toEqual([channelOf(a.nodeId), 1]);
    await publisher.publish(new Map([[a.nodeId, batch('after')]]));
    await waitFor(() => rec.batches.length === 2, 3_000, 'delivery after the reconnect');
    expect(rec.batches[1]).toEqual(batch('after'));
    await expect(a.channel.ping()).resolves.toBeUndefined();

    // Every further reconnect resyncs again.
    await killConnection(`relay:${a.nodeId}:sub`);
    await waitFor(() => rec.resyncs === 2, 5_000, 'second onResync');
    expect(await rec.subscribersAtResync[1]).toEqual([channelOf(a.nodeId), 1]);
    expect(warn.mock.calls.some(([m]) => String(m).includes('resyncing'))).toBe(true);
  });

  it('unsubscribe stops deliveries and closes the subscriber connection; subscribing again works', async () => {
    const a = node('gw-a');
    const rec = new Recorder();
    await a.channel.subscribe(a.nodeId, rec);
    expect(await subscriberCount(a.nodeId)).toBe(1);
    await expect(a.channel.subscribe(a.nodeId, rec)).rejects.toThrow(/already subscribed/);

    await a.channel.unsubscribe();
    expect(await subscriberCount(a.nodeId)).toBe(0);
    expect(await redis.publish(channelOf(a.nodeId), JSON.stringify(batch('lost')))).toBe(0);
    await a.channel.unsubscribe(); // idempotent
    await expect(a.channel.ping()).resolves.toBeUndefined(); // the command connection is still there

    const again = new Recorder();
    await a.channel.subscribe(a.nodeId, again);
    await a.channel.publish(new Map([[a.nodeId, batch('again')]]));
    await waitFor(() => again.batches.length === 1, 3_000, 'delivery after re-subscribing');
    expect(rec.batches).toEqual([]);
  });

  it('ping checks the command connection and, when subscribed, the subscriber connection', async () => {
    const a = node('gw-a');
    await expect(a.channel.ping()).resolves.toBeUndefined();
    await a.channel.subscribe(a.nodeId, new Recorder());
    const ping = jest.spyOn(a.connections.command, 'ping');
    await expect(a.channel.ping()).resolves.toBeUndefined();
    expect(ping).toHaveBeenCalledTimes(1);
  });

  it('is what the factory builds for SESSIONS=redis, and the factory says clearly when Redis is not wired', () => {
    const config = { engines: { sessions: 'redis' } } as unknown as Config;
    expect(nodeChannelFactory.useFactory(config, router)).toBeInstanceOf(RedisChannelDriver);
    expect(() => nodeChannelFactory.useFactory(config, undefined)).toThrow(/RedisModule is not loaded/);
  });
});
