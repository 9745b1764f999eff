import type { ChainableCommander } from 'ioredis';
import { keySlot } from '../../redis/key-slot';
import { RedisClient, RedisConnections, execGrouped, groupBySlot } from '../../redis/redis.module';
import { addRoute, PresenceChange, PresenceState, PresenceStore } from '../presence.store';

/** Users per pipeline or script call: bounds one request/reply while the chunks still go out together. */
const CHUNK = 1_000;
/** How long a user's presence hash outlives its last write (it keeps the version of an offline user). */
const KEEP_MS = 24 * 3600_000;
/**
 * Users are spread over this many buckets; a bucket is a Redis Cluster hash tag (`{pN}`): a user's
 * presence and watcher hashes and the bucket's due set share a slot, so every flip stays one script.
 */
const BUCKETS = 16;

/** Shared Lua: the next version of a presence hash (Redis time in µs, strictly above the last one). */
const LUA_LIB = `
local function bump(key)
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local prev = tonumber(redis.call('HGET', key, 'v') or '0')
  if v <= prev then v = prev + 1 end
  local s = string.format('%.0f', v)
  redis.call('HSET', key, 'v', s)
  return s
end
local function watchers(key, cutoff)
  local out = {}
  local h = redis.call('HGETALL', key)
  for i = 1, #h, 2 do
    if tonumber(h[i + 1]) >= cutoff then out[#out + 1] = h[i] else redis.call('HDEL', key, h[i]) end
  end
  return out
end
`;

/**
 * KEYS: presence hash, watcher hash, due set. ARGV: node, now, ttl, keep, user.
 * Refreshes the node's field and the offline check; on a flip to online returns {version, watchers...}.
 */
const ONLINE_SCRIPT = `${LUA_LIB}
local now = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'n:' .. ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[5])
if redis.call('HGET', KEYS[1], 'on') == '1' then return false end
redis.call('HSET', KEYS[1], 'on', '1')
local out = watchers(KEYS[2], now - tonumber(ARGV[3]))
table.insert(out, 1, bump(KEYS[1]))
return out`;

/**
 * KEYS: a bucket's due set. ARGV: now, ttl, limit, presence key prefix, watcher key prefix (both of
 * the bucket, so on its slot). Checks the users whose offline check is due: one with a live node is
 * re-armed for when that node's refresh would expire; one without is dropped from the set and, if
 * announced online, flipped offline: returns {{user, version, {watchers}}...}.
 */
const SWEEP_SCRIPT = `${LUA_LIB}
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local cutoff = now - ttl
local out = {}
for _, u in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))) do
  local key = ARGV[4] .. u
  local h = redis.call('HGETALL', key)
  local latest = 0
  local on = false
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 2) == 'n:' then
      local t = tonumber(h[i + 1]) or 0
      if t >= cutoff then
        if t > latest then latest = t end
      else
        redis.call('HDEL', key, h[i])
      end
    elseif h[i] == 'on' then
      on = h[i + 1] == '1'
    end
  end
  if latest > 0 then
    redis.call('ZADD', KEYS[1], latest + ttl, u)
  else
    redis.call('ZREM', KEYS[1], u)
    if on then
      redis.call('HDEL', key, 'on')
      out[#out + 1] = {u, bump(key), watchers(ARGV[5] .. u, cutoff)}
    end
  end
end
return out`;

/**
 * KEYS: a bucket's due set (only to route the call to the bucket's slot). ARGV: cutoff, presence key
 * prefix of the bucket, users... Returns {user, node, user, node, ...} for every live node of each user.
 */
const NODES_SCRIPT = `
local cutoff = tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV do
  local h = redis.call('HGETALL', ARGV[2] .. ARGV[i])
  for j = 1, #h, 2 do
    if string.sub(h[j], 1, 2) == 'n:' and (tonumber(h[j + 1]) or 0) >= cutoff then
      out[#out + 1] = ARGV[i]
      out[#out + 1] = string.sub(h[j], 3)
    end
  end
end
return out`;

/**
 * KEYS: a bucket's due set (routing only). ARGV: node, now, ttl, presence and watcher key prefixes of
 * the bucket, users... Registers the node as a watcher of each user (before reading it, see `watch`)
 * and returns {on, version} per user.
 */
const WATCH_SCRIPT = `
local out = {}
for i = 6, #ARGV do
  local w = ARGV[5] .. ARGV[i]
  redis.call('HSET', w, ARGV[1], ARGV[2])
  redis.call('PEXPIRE', w, ARGV[3])
  local s = redis.call('HMGET', ARGV[4] .. ARGV[i], 'on', 'v')
  out[#out + 1] = s[1] or ''
  out[#out + 1] = s[2] or '0'
end
return out`;

type Reply = string | null;
interface Scripts {
  relayPresenceOnline(...args: (string | number)[]): Promise<Reply[] | null>;
  relayPresenceSweep(...args: (string | number)[]): Promise<[string, string, string[]][]>;
  relayPresenceNodes(...args: (string | number)[]): Promise<string[]>;
  relayPresenceWatch(...args: (string | number)[]): Promise<string[]>;
}

/**
 * PresenceStore on Redis (keys under REDIS_KEY_PREFIX; `{pN}` is the user's bucket, a hash tag):
 *
 * - `pr:{pN}<user>`: hash `on` ('1' while announced online), `v` (version), `n:{node}` -> that node's
 *   last refresh (ms). PEXPIRE 24 h from the last write.
 * - `pw:{pN}<user>`: hash node -> last watch refresh (ms), PEXPIRE = TTL; fields older than the TTL are
 *   dead watchers, skipped and deleted when read.
 * - `pdue:{pN}`: sorted set user -> when to check the user for offline (refresh + TTL, or close + grace).
 * - `ty:{<user>}|<conversation>`: the typing start slot, PX = the relay interval.
 *
 * Every status flip happens inside one script, so it is returned to exactly one caller. Timestamps
 * are the nodes' clocks (as in the session driver); versions are Redis time, so they grow across
 * nodes. Node refreshes and watches are written by heartbeats, one call per chunk of users (on a
 * Redis Cluster, per bucket). The sweep runs one script per bucket.
 */
export class RedisPresenceDriver extends PresenceStore {
  private readonly redis: RedisClient;
  private readonly scripts: Scripts;
  private readonly prefix: string;

  constructor(
    private readonly connections: RedisConnections,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.redis = connections.command;
    this.prefix = connections.prefix;
    this.redis.defineCommand('relayPresenceOnline', { numberOfKeys: 3, lua: ONLINE_SCRIPT });
    this.redis.defineCommand('relayPresenceSweep', { numberOfKeys: 1, lua: SWEEP_SCRIPT });
    this.redis.defineCommand('relayPresenceNodes', { numberOfKeys: 1, lua: NODES_SCRIPT });
    this.redis.defineCommand('relayPresenceWatch', { numberOfKeys: 1, lua: WATCH_SCRIPT });
    this.scripts = this.redis as unknown as Scripts;
  }

  private bucketOf(userId: string): number {
    return keySlot(userId) % BUCKETS;
  }

  private presencePrefix(bucket: number): string {
    return `${this.prefix}pr:{p${bucket}}`;
  }

  private watchPrefix(bucket: number): string {
    return `${this.prefix}pw:{p${bucket}}`;
  }

  private dueKey(bucket: number): string {
    return `${this.prefix}pdue:{p${bucket}}`;
  }

  private presenceKey(userId: string): string {
    return this.presencePrefix(this.bucketOf(userId)) + userId;
  }

  private watchKey(userId: string): string {
    return this.watchPrefix(this.bucketOf(userId)) + userId;
  }

  /** Users grouped by bucket (then chunked): one script call per group stays on one slot. */
  private byBucket(userIds: string[]): { bucket: number; users: string[] }[] {
    const buckets = userIds.map((u) => this.bucketOf(u));
    return groupBySlot(
      true,
      buckets.map((b) => this.dueKey(b)),
      CHUNK,
    ).map((group) => ({ bucket: buckets[group[0]], users: group.map((i) => userIds[i]) }));
  }

  async connected(node: string, userIds: string[]): Promise<PresenceChange[]> {
    const replies = await this.chunked(userIds, (p, userId) =>
      (p as unknown as Scripts).relayPresenceOnline(
        this.presenceKey(userId),
        this.watchKey(userId),
        this.dueKey(this.bucketOf(userId)),
        node,
        this.now(),
        this.ttlMs,
        KEEP_MS,
        userId,
      ),
    );
    const changes: PresenceChange[] = [];
    userIds.forEach((userId, i) => {
      const r = replies[i] as Reply[] | null;
      if (!r) return;
      const [version, ...watchers] = r;
      changes.push({ userId, online: true, version: Number(version), watchers: watchers as string[] });
    });
    return changes;
  }

  async left(node: string, userIds: string[], graceMs: number): Promise<void> {
    const at = this.now() + graceMs;
    await this.chunked(
      userIds,
      (p, userId) =>
        p.hdel(this.presenceKey(userId), `n:${node}`).zadd(this.dueKey(this.bucketOf(userId)), at, userId),
      2,
    );
  }

  /** One script per bucket, all at once; at most `limit` users checked per bucket. */
  async sweep(limit: number): Promise<PresenceChange[]> {
    const now = this.now();
    const perBucket = await Promise.all(
      Array.from({ length: BUCKETS }, (_, b) =>
        this.scripts.relayPresenceSweep(
          this.dueKey(b),
          now,
          this.ttlMs,
          limit,
          this.presencePrefix(b),
          this.watchPrefix(b),
        ),
      ),
    );
    return perBucket.flat().map(([userId, version, watchers]) => ({
      userId,
      online: false,
      version: Number(version),
      watchers,
    }));
  }

  async watch(node: string, userIds: string[]): Promise<Map<string, PresenceState>> {
    // Per user: the watch first, then the read, in one script per bucket group. A flip that read the
    // watchers before our HSET is in the state we read; one after it is sent to us too (and the
    // gateway drops it by version).
    const now = this.now();
    const out = new Map<string, PresenceState>();
    await Promise.all(
      this.byBucket(userIds).map(async ({ bucket, users }) => {
        const flat = await this.scripts.relayPresenceWatch(
          this.dueKey(bucket),
          node,
          now,
          this.ttlMs,
          this.presencePrefix(bucket),
          this.watchPrefix(bucket),
          ...users,
        );
        users.forEach((userId, i) => out.set(userId, state([flat[2 * i] || null, flat[2 * i + 1]])));
      }),
    );
    return new Map(userIds.map((u) => [u, out.get(u)!]));
  }

  async unwatch(node: string, userIds: string[]): Promise<void> {
    await this.chunked(userIds, (p, userId) => p.hdel(this.watchKey(userId), node));
  }

  async status(userIds: string[]): Promise<Map<string, PresenceState>> {
    const replies = await this.chunked(userIds, (p, userId) => p.hmget(this.presenceKey(userId), 'on', 'v'));
    return new Map(userIds.map((userId, i) => [userId, state(replies[i] as Reply[])]));
  }

  async typingRoute(
    userId: string,
    conversationId: string,
    state: 'start' | 'stop',
    recipients: string[],
    intervalMs: number,
  ): Promise<Map<string, string[]> | null> {
    // The start slot is the typist's own key; the recipients' live nodes are read per bucket after it.
    const slot = `${this.prefix}ty:{${userId}}|${conversationId}`;
    if (state === 'start') {
      if ((await this.redis.set(slot, '1', 'PX', intervalMs, 'NX')) === null) return null;
    } else {
      await this.redis.del(slot);
    }
    const cutoff = this.now() - this.ttlMs;
    const flats = await Promise.all(
      this.byBucket(recipients).map(({ bucket, users }) =>
        this.scripts.relayPresenceNodes(this.dueKey(bucket), cutoff, this.presencePrefix(bucket), ...users),
      ),
    );
    const routes = new Map<string, string[]>();
    for (const flat of flats) {
      for (let i = 0; i + 1 < flat.length; i += 2) addRoute(routes, flat[i + 1], flat[i]);
    }
    return routes;
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  /** One pipeline per CHUNK users (on a cluster, per bucket), all at once; replies in user order. */
  private chunked(
    userIds: string[],
    add: (p: ChainableCommander, userId: string) => unknown,
    perUser = 1,
  ): Promise<unknown[]> {
    return execGrouped(this.connections, userIds, (u) => this.presenceKey(u), CHUNK, perUser, add);
  }
}

function state(reply: Reply[] | undefined): PresenceState {
  return { online: reply?.[0] === '1', version: Number(reply?.[1] ?? 0) || 0 };
}
