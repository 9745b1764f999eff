import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { Config } from '../../src/config/config.module';
import { DirectoryStore } from '../../src/directory/conversation-directory';
import { MemoryDirectoryStoreDriver } from '../../src/directory/drivers/memory-directory-store.driver';
import { RedisMembershipDriver } from '../../src/directory/drivers/redis-membership.driver';
import { RedisConnections } from '../../src/redis/redis.module';
import { deleteKeys } from '../support/backends';

/**
 * RedisMembershipDriver against the real Redis of scripts/infra.sh. Two RedisConnections stand for two
 * gateway nodes; one store (the in-memory driver, standing for the shared MariaDB) is read by both, and a
 * test can hold a node's store read to race it against a change.
 */
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `relay-test:${randomUUID()}:`;

jest.setTimeout(20_000);

let nodeA: RedisConnections;
let nodeB: RedisConnections;
let redis: Redis;

function connect(): RedisConnections {
  const config = { nodeId: `test-${randomUUID()}`, redis: { url: REDIS_URL, keyPrefix: PREFIX } };
  return new RedisConnections(config as unknown as Config);
}

const id = (what: string): string => `${what}-${randomUUID().slice(0, 8)}`;

/** A store read that a test holds: the read happens at once, its answer is returned on `release`. */
class GatedStore extends MemoryDirectoryStoreDriver {
  reads = 0;
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;

  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }

  release(): void {
    this.open?.();
    this.gate = null;
  }

  override async get(conversationIds: string[]): Promise<Map<string, string[]>> {
    this.reads++;
    const snapshot = await super.get(conversationIds);
    if (this.gate) await this.gate;
    return snapshot;
  }
}

/** What the directory API does: the store change, then `changed` (here on the node serving the API). */
async function change(
  store: DirectoryStore,
  api: RedisMembershipDriver,
  conversation: string,
  fn: () => Promise<unknown>,
) {
  await fn();
  await api.changed(conversation);
}

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within 5 s');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Counts the SMISMEMBER replies of a connection from now on. */
function countReplies(client: Redis): () => number {
  let n = 0;
  const original = client.smismember.bind(client) as (...args: unknown[]) => Promise<number[]>;
  jest
    .spyOn(client, 'smismember')
    .mockImplementation(((...args: unknown[]) => original(...args).finally(() => n++)) as never);
  return () => n;
}

afterEach(() => jest.restoreAllMocks());

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

describe('RedisMembershipDriver', () => {
  it('answers member, not_member and no_conversation, and serves later checks from the set', async () => {
    const store = new GatedStore();
    const a = new RedisMembershipDriver(nodeA, store);
    const room = id('room');
    await store.put(room, ['alice', 'bob']);
    expect(await a.check(room, 'alice')).toBe('member');
    expect(await a.check(room, 'mallory')).toBe('not_member');
    expect(await a.check(id('nowhere'), 'alice')).toBe('no_conversation');
    const reads = store.reads;
    expect(await a.check(room, 'bob')).toBe('member');
    expect(await a.check(room, 'carol')).toBe('not_member');
    expect(store.reads).toBe(reads);
    expect(await redis.pttl(a.membersKey(room))).toBeGreaterThan(0);
  });

  it('a change is seen by the very next check on another node (members, deletion, creation)', async () => {
    const store = new GatedStore();
    const a = new RedisMembershipDriver(nodeA, store);
    const b = new RedisMembershipDriver(nodeB, store);
    const [room, later] = [id('room'), id('later')];
    await store.put(room, ['alice', 'bob']);
    expect(await a.check(room, 'bob')).toBe('member');
    expect(await a.check(later, 'alice')).toBe('no_conversation'); // cached as unknown

    await change(store, b, room, () => store.removeMembers(room, ['bob']));
    expect(await a.check(room, 'bob')).toBe('not_member');
    await change(store, b, room, () => store.addMembers(room, ['carol'], 100));
    expect(await a.check(room, 'carol')).toBe('member');
    await change(store, b, later, () => store.put(later, ['alice']));
    expect(await a.check(later, 'alice')).toBe('member');
    await change(store, b, room, () => store.delete(room));
    expect(await a.check(room, 'alice')).toBe('no_conversation');
  });

  it('a load that read the store before a change does not write the old members', async () => {
    const store = new GatedStore();
    const a = new RedisMembershipDriver(nodeA, store);
    const b = new RedisMembershipDriver(nodeB, store);
    const room = id('room');
    await store.put(room, ['alice', 'bob']);
    store.hold();
    const racing = a.check(room, 'bob'); // misses, reads the token and the store (bob still in)
    await until(() => store.reads === 1);
    await change(store, b, room, () => store.removeMembers(room, ['bob']));
    store.release();
    // It answers from its own read, made before the change was answered...
    expect(await racing).toBe('member');
    // ...but did not cache it: no set, and the next check on any node reads the store again.
    expect(await redis.exists(a.membersKey(room))).toBe(0);
    expect(await b.check(room, 'bob')).toBe('not_member');
    expect(await a.check(room, 'bob')).toBe('not_member');
    expect(store.reads).toBe(2);
  });

  it('a check that starts after a change never joins a load that started before it', async () => {
    const store = new GatedStore();
    const a = new RedisMembershipDriver(nodeA, store);
    const b = new RedisMembershipDriver(nodeB, store);
    const room = id('room');
    await store.put(room, ['alice', 'bob']);
    store.hold();
    const before = a.check(room, 'bob');
    await until(() => store.reads === 1);
    await change(store, b, room, () => store.removeMembers(room, ['bob']));
    const replies = countReplies(nodeA.command as Redis);
    const after = a.check(room, 'bob'); // same node, same conversation, the first load still held
    await until(() => replies() === 1); // its check missed; the first load has not answered yet
    expect(store.reads).toBe(1);
    store.release();
    expect(await before).toBe('member');
    expect(await after).toBe('not_member');
  });

  it('loads a conversation larger than a Lua call can take in one go', async () => {
    const store = new GatedStore();
    const a = new RedisMembershipDriver(nodeA, store);
    const room = id('big');
    const members = Array.from({ length: 12_000 }, (_, i) => `u${i}`);
    await store.put(room, members);
    expect(await a.check(room, 'u11999')).toBe('member');
    expect(await redis.scard(a.membersKey(room))).toBe(12_001); // the members and the "exists" marker
    expect(await a.check(room, 'u0')).toBe('member');
    expect(await a.check(room, 'u12000')).toBe('not_member');
  });

  it('an empty conversation exists: its members are refused with not_member, not not_found', async () => {
    const store = new GatedStore();
    const a = new RedisMembershipDriver(nodeA, store);
    const room = id('empty');
    await store.put(room, []);
    expect(await a.check(room, 'alice')).toBe('not_member');
    expect(await a.check(room, 'alice')).toBe('not_member');
  });
});
