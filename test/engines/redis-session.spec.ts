import { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { Config } from '../../src/config/config.module';
import { RedisConnections } from '../../src/redis/redis.module';
import { RedisSessionDriver } from '../../src/session/drivers/redis-session.driver';
import { SessionEntry } from '../../src/session/session-map';
import { sessionMapFactory } from '../../src/session/session.module-factory';
import { waitFor } from '../support/wait-for';
import { deleteKeys } from '../support/backends';

/**
 * RedisSessionDriver against the real Redis of scripts/infra.sh (engines project globalSetup).
 * Every run uses its own key prefix and deletes its keys afterwards.
 */
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `relay-test:${randomUUID()}:`;
const LONG_TTL = 60_000;
const SHORT_TTL = 300;

jest.setTimeout(20_000);

let connections: RedisConnections;
let redis: Redis;

function connect(): RedisConnections {
  const config = { nodeId: `test-${randomUUID()}`, redis: { url: REDIS_URL, keyPrefix: PREFIX } };
  return new RedisConnections(config as unknown as Config);
}

function entry(connId: string, node: string, lastPing = Date.now()): SessionEntry {
  return { connId, node, connectedAt: lastPing - 1_000, lastPing };
}

/** Unique per test so tests never see each other's users or nodes. */
function ids(n: number, what = 'user'): string[] {
  const run = randomUUID().slice(0, 8);
  return Array.from({ length: n }, (_, i) => `${what}-${run}-${i}`);
}

const sessKey = (userId: string): string => `${PREFIX}sess:{${userId}}`;
const conns = (entries: SessionEntry[] | undefined): string[] => (entries ?? []).map((e) => e.connId).sort();

beforeAll(async () => {
  connections = connect();
  redis = connections.command as Redis;
  await redis.ping();
});

afterAll(async () => {
  await deleteKeys(redis, PREFIX);
  await connections.onApplicationShutdown();
});

afterEach(() => jest.restoreAllMocks());

describe('RedisSessionDriver: entries', () => {
  it('keeps several connections per user, on several nodes, and forgets removed ones', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    const [alice, bob, carol] = ids(3);
    const a1 = entry('a1', 'node-1');
    const a2 = entry('a2', 'node-2');
    await sessions.add(alice, a1);
    await sessions.add(alice, a2);
    await sessions.add(bob, entry('b1', 'node-1'));

    const found = await sessions.lookup([alice, bob, carol]);
    expect([...found.keys()].sort()).toEqual([alice, bob].sort());
    expect(found.get(alice)!.sort((x, y) => x.connId.localeCompare(y.connId))).toEqual([a1, a2]);
    expect(conns(found.get(bob))).toEqual(['b1']);

    // Stored layout: one hash per user, field = connection id, TTL on the key.
    expect(JSON.parse((await redis.hget(sessKey(alice), 'a2'))!)).toEqual({
      node: 'node-2',
      connected_at: a2.connectedAt,
      last_ping: a2.lastPing,
    });
    const pttl = await redis.pttl(sessKey(alice));
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(LONG_TTL);

    await sessions.remove(alice, 'a1');
    expect(conns((await sessions.lookup([alice])).get(alice))).toEqual(['a2']);
    await sessions.remove(alice, 'a2');
    await sessions.remove(alice, 'never-there');
    expect((await sessions.lookup([alice])).has(alice)).toBe(false);
    expect(await redis.exists(sessKey(alice))).toBe(0);
  });

  it('returns an empty map for no users and tolerates duplicates in the input', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    expect((await sessions.lookup([])).size).toBe(0);
    const [u] = ids(1);
    await sessions.add(u, entry('c1', 'node-1'));
    const found = await sessions.lookup([u, u, u]);
    expect(found.size).toBe(1);
    expect(conns(found.get(u))).toEqual(['c1']);
  });

  it("a crashed node's entries expire on their own: filtered on read, then the key is gone", async () => {
    const sessions = new RedisSessionDriver(connections, SHORT_TTL);
    const [u] = ids(1);
    await sessions.add(u, entry('c1', 'crashed-node'));
    expect(conns((await sessions.lookup([u])).get(u))).toEqual(['c1']);
    // Nobody touches, removes or reads it: Redis expires the key by itself.
    await waitFor(async () => (await redis.exists(sessKey(u))) === 0, 3_000, 'Redis to expire the key');
    expect((await sessions.lookup([u])).has(u)).toBe(false);

    // And a read between the TTL and Redis' own expiry already filters it out.
    const [w] = ids(1);
    await sessions.add(w, entry('c1', 'crashed-node', Date.now() - SHORT_TTL - 1));
    expect(await redis.exists(sessKey(w))).toBe(1);
    expect((await sessions.lookup([w])).has(w)).toBe(false);
  });

  it('heartbeats keep a connection alive while its dead sibling is filtered and lazily deleted', async () => {
    const sessions = new RedisSessionDriver(connections, SHORT_TTL);
    const [u] = ids(1);
    await sessions.add(u, entry('live', 'node-1'));
    await sessions.add(u, entry('dead', 'crashed-node'));
    const startedAt = Date.now();
    // Each poll is a heartbeat for 'live' only (touch refreshes last_ping and the key's TTL).
    await waitFor(
      async () => {
        await sessions.touch([{ userId: u, entry: entry('live', 'node-1') }]);
        const found = await sessions.lookup([u]);
        return conns(found.get(u)).join() === 'live';
      },
      3_000,
      'dead sibling filtered',
    );
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(SHORT_TTL - 50);
    // The live connection kept the key alive, so only the read-side filter could have dropped 'dead'...
    expect(await redis.exists(sessKey(u))).toBe(1);
    // ...and the lookup deleted it from the hash in the background.
    await waitFor(async () => (await redis.hexists(sessKey(u), 'dead')) === 0, 2_000, 'lazy HDEL');
    expect(await redis.hexists(sessKey(u), 'live')).toBe(1);
  });

  it('filters by last_ping: a touched entry whose client stopped answering pings still expires', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    const [u] = ids(1);
    const stale = Date.now() - LONG_TTL - 1_000;
    await sessions.touch([
      { userId: u, entry: entry('fresh', 'node-1') },
      { userId: u, entry: entry('stale', 'node-1', stale) },
    ]);
    expect(conns((await sessions.lookup([u])).get(u))).toEqual(['fresh']);
    await waitFor(async () => (await redis.hexists(sessKey(u), 'stale')) === 0, 2_000, 'lazy HDEL');
  });

  it('the lazy delete does not remove an entry refreshed after it was read', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    const [u] = ids(1);
    await sessions.add(u, entry('c1', 'node-1', Date.now() - LONG_TTL - 1_000));
    // Let the lookup's read through, but hold its background prune until a heartbeat has landed.
    const original = redis.pipeline.bind(redis);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let pruned!: Promise<unknown>;
    let calls = 0;
    jest.spyOn(redis, 'pipeline').mockImplementation(() => {
      const p = original();
      if (++calls === 2) {
        const exec = p.exec.bind(p);
        p.exec = (() => (pruned = gate.then(() => exec()))) as typeof p.exec;
      }
      return p;
    });
    expect((await sessions.lookup([u])).has(u)).toBe(false);
    expect(calls).toBe(2);
    const refreshed = entry('c1', 'node-1');
    await sessions.touch([{ userId: u, entry: refreshed }]);
    release();
    await pruned;
    expect((await sessions.lookup([u])).get(u)).toEqual([refreshed]);

    // Control: without the heartbeat, the same prune deletes the field.
    jest.restoreAllMocks();
    await sessions.add(u, entry('c2', 'node-1', Date.now() - LONG_TTL - 1_000));
    await sessions.lookup([u]);
    await waitFor(async () => (await redis.hexists(sessKey(u), 'c2')) === 0, 2_000, 'lazy HDEL');
    expect(await redis.hexists(sessKey(u), 'c1')).toBe(1);
  });

  it('ignores and deletes malformed entries', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    const [u] = ids(1);
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    await sessions.add(u, entry('good', 'node-1'));
    await redis.hset(sessKey(u), 'bad', 'not json', 'partial', '{"node":"n"}');
    expect(conns((await sessions.lookup([u])).get(u))).toEqual(['good']);
    await waitFor(async () => (await redis.hlen(sessKey(u))) === 1, 2_000, 'malformed fields deleted');
    expect(warn).toHaveBeenCalledTimes(2);
  });

  it('touch re-creates entries Redis lost and refreshes the TTL of every touched user', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    const [u, v] = ids(2);
    await sessions.add(u, entry('u1', 'node-1'));
    await redis.pexpire(sessKey(u), 5_000);
    await sessions.touch([
      { userId: u, entry: entry('u1', 'node-1') },
      { userId: u, entry: entry('u2', 'node-2') },
      { userId: v, entry: entry('v1', 'node-1') }, // e.g. Redis restarted without persistence
    ]);
    const found = await sessions.lookup([u, v]);
    expect(conns(found.get(u))).toEqual(['u1', 'u2']);
    expect(conns(found.get(v))).toEqual(['v1']);
    for (const key of [sessKey(u), sessKey(v)]) expect(await redis.pttl(key)).toBeGreaterThan(5_000);
  });

  it('touch and lookup are one pipeline each (chunked for very large inputs), never one await per user', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    const users = ids(2_500);
    const multi = jest.spyOn(redis, 'multi');
    const pipeline = jest.spyOn(redis, 'pipeline');
    const hgetall = jest.spyOn(redis, 'hgetall');
    const hset = jest.spyOn(redis, 'hset');

    await sessions.touch(users.slice(0, 10).map((u, i) => ({ userId: u, entry: entry(`c${i}`, 'node-1') })));
    expect(multi).toHaveBeenCalledTimes(1);

    await sessions.touch(users.map((u, i) => ({ userId: u, entry: entry(`c${i}`, 'node-1') })));
    expect(multi).toHaveBeenCalledTimes(1 + 3); // 1000 users per MULTI, all sent together

    pipeline.mockClear(); // touch's counter INCR may have gone through ioredis' auto-pipeline
    const found = await sessions.lookup([...users, ...ids(5, 'nobody')]);
    expect(pipeline).toHaveBeenCalledTimes(3); // 2505 users: 1000 + 1000 + 505
    expect(found.size).toBe(users.length);
    expect(conns(found.get(users[1234]))).toEqual(['c1234']);

    pipeline.mockClear();
    await sessions.lookup(users.slice(0, 50));
    expect(pipeline).toHaveBeenCalledTimes(1);
    // Nothing went out as a standalone command.
    expect(hgetall).not.toHaveBeenCalled();
    expect(hset).not.toHaveBeenCalled();
  });

  it('throws when a command in the pipeline fails (no silent partial results)', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    const [good, broken] = ids(2);
    await sessions.add(good, entry('c1', 'node-1'));
    await redis.set(sessKey(broken), 'a string, not a hash');
    await expect(sessions.lookup([good, broken])).rejects.toThrow(/WRONGTYPE/);
    await expect(sessions.touch([{ userId: broken, entry: entry('c2', 'node-1') }])).rejects.toThrow(
      /WRONGTYPE/,
    );
    await expect(sessions.add(broken, entry('c2', 'node-1'))).rejects.toThrow(/WRONGTYPE/);
  });
});

describe('RedisSessionDriver: node registry', () => {
  it('lists registered nodes and forgets unregistered ones', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    const [n1, n2] = ids(2, 'node');
    await sessions.registerNode(n1);
    await sessions.registerNode(n2);
    expect(await sessions.liveNodes()).toEqual(new Set([n1, n2]));
    await sessions.unregisterNode(n2);
    expect(await sessions.liveNodes()).toEqual(new Set([n1]));
    await sessions.unregisterNode(n1);
    expect(await sessions.liveNodes()).toEqual(new Set());
  });

  it('skips a node whose heartbeats stopped while the others keep beating, and prunes it', async () => {
    const sessions = new RedisSessionDriver(connections, SHORT_TTL);
    const [alive, dead] = ids(2, 'node');
    await sessions.registerNode(alive);
    await sessions.registerNode(dead);
    expect(await sessions.liveNodes()).toEqual(new Set([alive, dead]));
    await waitFor(
      async () => {
        await sessions.registerNode(alive); // heartbeat
        const live = await sessions.liveNodes();
        return live.has(alive) && !live.has(dead);
      },
      3_000,
      'dead node skipped',
    );
    // A heartbeat removes dead members from the registry itself.
    await sessions.registerNode(alive);
    expect(await redis.zscore(`${PREFIX}nodes`, dead)).toBeNull();
    expect(await redis.zscore(`${PREFIX}nodes`, alive)).not.toBeNull();
    expect(await redis.pttl(`${PREFIX}nodes`)).toBeGreaterThan(0);
  });

  it('the router skips sessions on dead nodes: lookup + liveNodes together', async () => {
    const sessions = new RedisSessionDriver(connections, LONG_TTL);
    const [u] = ids(1);
    const [up, gone] = ids(2, 'node');
    await sessions.registerNode(up);
    await sessions.add(u, entry('c-up', up));
    await sessions.add(u, entry('c-gone', gone)); // its node never registered (or already expired)
    const [found, live] = await Promise.all([sessions.lookup([u]), sessions.liveNodes()]);
    expect(
      found
        .get(u)!
        .filter((e) => live.has(e.node))
        .map((e) => e.connId),
    ).toEqual(['c-up']);
  });
});

describe('RedisSessionDriver: wiring', () => {
  it('answers ping', async () => {
    await expect(new RedisSessionDriver(connections, LONG_TTL).ping()).resolves.toBeUndefined();
  });

  it('is what the factory builds for SESSIONS=redis, and the factory says clearly when Redis is not wired', () => {
    const config = { engines: { sessions: 'redis' }, sessionTtlMs: LONG_TTL } as unknown as Config;
    expect(sessionMapFactory.useFactory(config, connections)).toBeInstanceOf(RedisSessionDriver);
    expect(() => sessionMapFactory.useFactory(config, undefined)).toThrow(/RedisModule is not loaded/);
  });
});
