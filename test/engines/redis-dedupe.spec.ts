import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { Config } from '../../src/config/config.module';
import { RedisDedupeDriver } from '../../src/session/drivers/redis-dedupe.driver';
import { AckRecord } from '../../src/session/send-dedupe';
import { sendDedupeFactory } from '../../src/session/session.module-factory';
import { RedisConnections } from '../../src/redis/redis.module';
import { waitFor } from '../support/wait-for';
import { deleteKeys } from '../support/backends';

/**
 * RedisDedupeDriver against the real Redis of scripts/infra.sh (engines project globalSetup).
 * Two RedisConnections stand for two gateway nodes sharing one Redis; keys carry a per-run prefix.
 */
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `relay-test:${randomUUID()}:`;
const WINDOW = 60_000;

jest.setTimeout(20_000);

let nodeA: RedisConnections;
let nodeB: RedisConnections;
let redis: Redis;

function connect(): RedisConnections {
  const config = { nodeId: `test-${randomUUID()}`, redis: { url: REDIS_URL, keyPrefix: PREFIX } };
  return new RedisConnections(config as unknown as Config);
}

let n = 0;
function ack(conversation = 'c1'): AckRecord {
  n++;
  return {
    id: `m-${n}-${randomUUID().slice(0, 8)}`,
    ts: 1_700_000_000_000 + n,
    conversation_id: conversation,
  };
}

const user = (): string => `user-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  nodeA = connect();
  nodeB = connect();
  redis = nodeA.command as Redis;
  await redis.ping();
});

afterAll(async () => {
  await deleteKeys(redis, PREFIX);
  await Promise.all([nodeA.onApplicationShutdown(), nodeB.onApplicationShutdown()]);
});

afterEach(() => jest.restoreAllMocks());

describe('RedisDedupeDriver', () => {
  it('release frees a reservation only while the key holds that candidate', async () => {
    const onA = new RedisDedupeDriver(nodeA, WINDOW);
    const onB = new RedisDedupeDriver(nodeB, WINDOW);
    const u = user();
    const first = ack();
    expect(await onA.reserve(u, 'r1', first)).toBeNull();
    await onB.release(u, 'r1', ack()); // another candidate: the key stays
    expect(await onB.reserve(u, 'r1', ack())).toEqual(first);
    await onA.release(u, 'r1', first);
    const next = ack('c2');
    expect(await onB.reserve(u, 'r1', next)).toBeNull();
    expect(await onA.reserve(u, 'r1', ack())).toEqual(next);
  });

  it('first reserve stores the candidate and returns null; later ones, from any node, get the first record', async () => {
    const onA = new RedisDedupeDriver(nodeA, WINDOW);
    const onB = new RedisDedupeDriver(nodeB, WINDOW);
    const u = user();
    const first = ack();
    expect(await onA.reserve(u, 'ref-1', first)).toBeNull();
    expect(await onA.reserve(u, 'ref-1', ack())).toEqual(first);
    expect(await onB.reserve(u, 'ref-1', ack())).toEqual(first);

    const key = `${PREFIX}dedupe:{${u}}:ref-1`;
    expect(JSON.parse((await redis.get(key))!)).toEqual(first);
    const pttl = await redis.pttl(key);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(WINDOW); // a later reserve does not extend the window
  });

  it('keys are per (user, ref): other refs and other users are independent, even when ids contain ":"', async () => {
    const d = new RedisDedupeDriver(nodeA, WINDOW);
    const u = user();
    const v = user();
    expect(await d.reserve(u, 'ref-1', ack())).toBeNull();
    expect(await d.reserve(u, 'ref-2', ack())).toBeNull();
    expect(await d.reserve(v, 'ref-1', ack())).toBeNull();
    // User ids may contain ':' and refs are arbitrary: ("x", "y:z") and ("x:y", "z") must not collide.
    const x = user();
    const mine = ack('c-mine');
    expect(await d.reserve(x, 'y:z', mine)).toBeNull();
    expect(await d.reserve(`${x}:y`, 'z', ack('c-theirs'))).toBeNull();
    expect(await d.reserve(x, 'y:z', ack())).toEqual(mine);
  });

  it('concurrent reserves of one key from two nodes: exactly one wins, everyone gets its record', async () => {
    const onA = new RedisDedupeDriver(nodeA, WINDOW);
    const onB = new RedisDedupeDriver(nodeB, WINDOW);
    const u = user();
    const candidates = Array.from({ length: 40 }, () => ack());
    const results = await Promise.all(candidates.map((c, i) => (i % 2 ? onA : onB).reserve(u, 'race', c)));
    const winners = results.flatMap((r, i) => (r === null ? [candidates[i]] : []));
    expect(winners).toHaveLength(1);
    for (const r of results) if (r !== null) expect(r).toEqual(winners[0]);
  });

  it('is one SET NX GET PX per reserve, and concurrent reserves share round trips (auto-pipelining)', async () => {
    const d = new RedisDedupeDriver(nodeA, WINDOW);
    const set = jest.spyOn(nodeA.command, 'set');
    const u = user();
    const write = jest.spyOn((nodeA.command as Redis).stream, 'write');
    await Promise.all(Array.from({ length: 50 }, (_, i) => d.reserve(u, `ref-${i}`, ack())));
    expect(set).toHaveBeenCalledTimes(50);
    expect(set.mock.calls[0].slice(2)).toEqual(['PX', WINDOW, 'NX', 'GET']);
    expect(write.mock.calls.length).toBeGreaterThan(0);
    expect(write.mock.calls.length).toBeLessThan(5); // 50 commands, a handful of socket writes
  });

  it('forgets a reservation after the window', async () => {
    const d = new RedisDedupeDriver(nodeA, 300);
    const u = user();
    const first = ack();
    const second = ack();
    expect(await d.reserve(u, 'ref', first)).toBeNull();
    expect(await d.reserve(u, 'ref', ack())).toEqual(first);
    // Once the window is over, the next reserve is a first one again (and stores its own candidate).
    await waitFor(async () => (await d.reserve(u, 'ref', second)) === null, 3_000, 'window to pass');
    expect(await d.reserve(u, 'ref', ack())).toEqual(second);
  });

  it('refuses to reuse a malformed record', async () => {
    const d = new RedisDedupeDriver(nodeA, WINDOW);
    const u = user();
    await redis.set(`${PREFIX}dedupe:{${u}}:ref`, '{"id":42}', 'PX', WINDOW);
    await expect(d.reserve(u, 'ref', ack())).rejects.toThrow(/malformed dedupe record/);
  });

  it('is what the factory builds for SESSIONS=redis, and the factory says clearly when Redis is not wired', () => {
    const config = {
      engines: { sessions: 'redis' },
      gateway: { dedupeWindowMs: WINDOW },
    } as unknown as Config;
    expect(sendDedupeFactory.useFactory(config, nodeA)).toBeInstanceOf(RedisDedupeDriver);
    expect(() => sendDedupeFactory.useFactory(config, undefined)).toThrow(/RedisModule is not loaded/);
  });
});
