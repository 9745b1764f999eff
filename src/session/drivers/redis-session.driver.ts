import { Logger } from '@nestjs/common';
import { RedisClient, RedisConnections, execChecked, execGrouped } from '../../redis/redis.module';
import { registrationBucket, SessionEntry, SessionMap } from '../session-map';

/** Users per pipeline: bounds the size of one request/reply while the chunks still go out together. */
const CHUNK = 1_000;

/** Deletes hash fields only if they still hold the value we judged dead (a heartbeat may have won the race). */
const PRUNE_SCRIPT = `
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n`;

/** What one hash field holds. */
interface StoredEntry {
  node: string;
  connected_at: number;
  last_ping: number;
}

/**
 * Session map on Redis.
 *
 * - `<prefix>sess:{<userId>}`: hash (the user id is its Redis Cluster hash tag), field = connection id, value = JSON {node, connected_at, last_ping}.
 *   The key's PEXPIRE (= session TTL) is refreshed by add/touch, so a user whose connections all sit
 *   on crashed nodes vanishes by itself. A live connection keeps the key alive for its dead siblings,
 *   so reads also drop fields whose last_ping is older than the TTL, and delete them lazily.
 * - `<prefix>nodes`: sorted set node -> time of its last heartbeat; live = heartbeat within the TTL.
 * - `<prefix>sess-adds`: hash, bucket of users (`registrationBucket`) -> count of entries created for
 *   them (by `add`, or by a `touch` that re-creates one), moved once the entry is written
 *   (`registrations`).
 *
 * Timestamps come from the nodes' clocks (as in the memory driver): skew between nodes must stay
 * well below the TTL (three heartbeats by default).
 *
 * Batches over many users are one pipeline per chunk on a single Redis, one per slot on a cluster.
 */
export class RedisSessionDriver extends SessionMap {
  private readonly logger = new Logger(RedisSessionDriver.name);
  private readonly redis: RedisClient;
  private readonly connections: RedisConnections;
  private readonly prefix: string;
  private readonly nodesKey: string;
  private readonly addsKey: string;

  constructor(
    connections: RedisConnections,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.connections = connections;
    this.redis = connections.command;
    this.prefix = connections.prefix;
    this.nodesKey = `${this.prefix}nodes`;
    this.addsKey = `${this.prefix}sess-adds`;
  }

  private key(userId: string): string {
    return `${this.prefix}sess:{${userId}}`;
  }

  /**
   * HSET + PEXPIRE in one MULTI: a field must never be written without its key's TTL. The counter
   * moves after the entry is written: in the same MULTI on one Redis, after it on a cluster (another
   * slot), so whoever sees the new count can read the entry.
   */
  async add(userId: string, entry: SessionEntry): Promise<void> {
    const key = this.key(userId);
    const bucket = registrationBucket(userId);
    const tx = this.redis.multi().hset(key, entry.connId, encode(entry)).pexpire(key, this.ttlMs);
    if (this.connections.isCluster) {
      await execChecked(tx);
      await this.redis.hincrby(this.addsKey, String(bucket), 1);
    } else await execChecked(tx.hincrby(this.addsKey, String(bucket), 1));
  }

  async registrations(buckets: readonly number[]): Promise<number[]> {
    if (buckets.length === 0) return [];
    // No field: nothing registered there yet, or Redis lost its data (then the count moved from what it was).
    const values = await this.redis.hmget(this.addsKey, ...buckets.map(String));
    return values.map((v) => (v === null ? 0 : Number(v)));
  }

  async remove(userId: string, connId: string): Promise<void> {
    await this.redis.hdel(this.key(userId), connId);
  }

  /** Upsert (a Redis that lost its data is refilled by the next heartbeat), one MULTI per chunk of users, all chunks at once. */
  async touch(entries: { userId: string; entry: SessionEntry }[]): Promise<void> {
    if (entries.length === 0) return;
    const byUser = new Map<string, string[]>();
    for (const { userId, entry } of entries) {
      let fields = byUser.get(userId);
      if (!fields) byUser.set(userId, (fields = []));
      fields.push(entry.connId, encode(entry));
    }
    const replies = await execGrouped(
      this.connections,
      [...byUser],
      ([userId]) => this.key(userId),
      CHUNK,
      2,
      (tx, [userId, fields]) => {
        const key = this.key(userId);
        tx.hset(key, ...fields).pexpire(key, this.ttlMs);
      },
      true,
    );
    // HSET answers how many fields it created: an entry re-created (Redis lost it) counts as an add.
    const moved = new Set<number>();
    [...byUser.keys()].forEach((userId, i) => {
      if (Number(replies[2 * i]) > 0) moved.add(registrationBucket(userId));
    });
    if (moved.size > 0) {
      const p = this.redis.pipeline();
      for (const b of moved) p.hincrby(this.addsKey, String(b), 1);
      await execChecked(p);
    }
  }

  async lookup(userIds: string[]): Promise<Map<string, SessionEntry[]>> {
    const out = new Map<string, SessionEntry[]>();
    const users = [...new Set(userIds)];
    if (users.length === 0) return out;
    const cutoff = this.now() - this.ttlMs;
    const hashes = (await execGrouped(
      this.connections,
      users,
      (userId) => this.key(userId),
      CHUNK,
      1,
      (p, userId) => p.hgetall(this.key(userId)),
    )) as Record<string, string>[];

    const dead = new Map<string, string[]>(); // key -> [field, value, field, value, ...]
    users.forEach((userId, i) => {
      const live: SessionEntry[] = [];
      for (const [connId, raw] of Object.entries(hashes[i] ?? {})) {
        const stored = decode(raw);
        if (stored && stored.last_ping >= cutoff) {
          live.push({
            connId,
            node: stored.node,
            connectedAt: stored.connected_at,
            lastPing: stored.last_ping,
          });
          continue;
        }
        if (!stored) this.logger.warn(`dropping malformed session entry ${userId}/${connId}`);
        const key = this.key(userId);
        let fields = dead.get(key);
        if (!fields) dead.set(key, (fields = []));
        fields.push(connId, raw);
      }
      if (live.length > 0) out.set(userId, live);
    });
    if (dead.size > 0) void this.prune(dead);
    return out;
  }

  /** Off the routing path: a failed prune only means the same fields are filtered (and retried) next time. */
  private async prune(dead: Map<string, string[]>): Promise<void> {
    try {
      await execGrouped(
        this.connections,
        [...dead],
        ([key]) => key,
        CHUNK,
        1,
        (p, [key, fields]) => p.eval(PRUNE_SCRIPT, 1, key, ...fields),
      );
    } catch (err) {
      this.logger.warn(`pruning expired session entries failed: ${(err as Error).message}`);
    }
  }

  /** Heartbeat of a node; also drops nodes whose heartbeat is older than the TTL. */
  async registerNode(node: string): Promise<void> {
    const now = this.now();
    await execChecked(
      this.redis
        .pipeline()
        .zadd(this.nodesKey, now, node)
        .zremrangebyscore(this.nodesKey, '-inf', `(${now - this.ttlMs}`)
        // Only matters when every node is gone: then the registry disappears as well.
        .pexpire(this.nodesKey, this.ttlMs * 2),
    );
  }

  async unregisterNode(node: string): Promise<void> {
    await this.redis.zrem(this.nodesKey, node);
  }

  async liveNodes(): Promise<Set<string>> {
    const nodes = await this.redis.zrangebyscore(this.nodesKey, this.now() - this.ttlMs, '+inf');
    return new Set(nodes);
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }
}

function encode(entry: SessionEntry): string {
  const stored: StoredEntry = {
    node: entry.node,
    connected_at: entry.connectedAt,
    last_ping: entry.lastPing,
  };
  return JSON.stringify(stored);
}

function decode(raw: string): StoredEntry | null {
  try {
    const v = JSON.parse(raw) as Partial<StoredEntry> | null;
    if (
      v &&
      typeof v.node === 'string' &&
      typeof v.connected_at === 'number' &&
      typeof v.last_ping === 'number'
    ) {
      return { node: v.node, connected_at: v.connected_at, last_ping: v.last_ping };
    }
  } catch {
    // malformed
  }
  return null;
}
