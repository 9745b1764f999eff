import type Redis from 'ioredis';
import type { ChainableCommander } from 'ioredis';
import { RedisConnections, execChecked } from '../../redis/redis.module';
import { addRoute, PresenceChange, PresenceState, PresenceStore } from '../presence.store';

/** Users per pipeline or script call: bounds one request/reply while the chunks still go out together. */
const CHUNK = 1_000;
/** How long a user's presence hash outlives its last write (it keeps the version of an offline user). */
const KEEP_MS = 24 * 3600_000;

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
 * KEYS: due set. ARGV: now, ttl, limit, key prefix. Checks the users whose offline check is due:
 * one with a live node is re-armed for when that node's refresh would expire; one without is dropped
 * from the set and, if announced online, flipped offline: returns {{user, version, {watchers}}...}.
 * The presence and watcher keys are derived from the prefix (single Redis, not Redis Cluster).
 */
const SWEEP_SCRIPT = `${LUA_LIB}
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local cutoff = now - ttl
local out = {}
for _, u in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))) do
  local key = ARGV[4] .. 'pr:' .. u
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
      out[#out + 1] = {u, bump(key), watchers(ARGV[4] .. 'pw:' .. u, cutoff)}
    end
  end
end
return out`;

/**
 * KEYS: typing slot. ARGV: state, interval, now, ttl, key prefix, recipients...
 * start: claims the slot (false if taken); stop: frees it. Returns {user, node, user, node, ...}
 * for every live node of every recipient.
 */
const TYPING_SCRIPT = `
if ARGV[1] == 'start' then
  if not redis.call('SET', KEYS[1], '1', 'PX', ARGV[2], 'NX') then return false end
else
  redis.call('DEL', KEYS[1])
end
local cutoff = tonumber(ARGV[3]) - tonumber(ARGV[4])
local out = {}
for i = 6, #ARGV do
  local h = redis.call('HGETALL', ARGV[5] .. 'pr:' .. ARGV[i])
  for j = 1, #h, 2 do
    if string.sub(h[j], 1, 2) == 'n:' and (tonumber(h[j + 1]) or 0) >= cutoff then
      out[#out + 1] = ARGV[i]
      out[#out + 1] = string.sub(h[j], 3)
    end
  end
end
return out`;

/**
 * ARGV: node, now, ttl, key prefix, users... Registers the node as a watcher of each user (before
 * reading it, see `watch`) and returns {on, version} per user.
 */
const WATCH_SCRIPT = `
local out = {}
for i = 5, #ARGV do
  local w = ARGV[4] .. 'pw:' .. ARGV[i]
  redis.call('HSET', w, ARGV[1], ARGV[2])
  redis.call('PEXPIRE', w, ARGV[3])
  local s = redis.call('HMGET', ARGV[4] .. 'pr:' .. ARGV[i], 'on', 'v')
  out[#out + 1] = s[1] or ''
  out[#out + 1] = s[2] or '0'
end
return out`;

type Reply = string | null;
interface Scripts {
  relayPresenceOnline(...args: (string | number)[]): Promise<Reply[] | null>;
  relayPresenceSweep(...args: (string | number)[]): Promise<[string, string, string[]][]>;
  relayTypingRoute(...args: (string | number)[]): Promise<string[] | null>;
  relayPresenceWatch(...args: (string | number)[]): Promise<string[]>;
}

/**
 * PresenceStore on Redis (keys under REDIS_KEY_PREFIX):
 *
 * - `pr:{user}`: hash `on` ('1' while announced online), `v` (version), `n:{node}` -> that node's
 *   last refresh (ms). PEXPIRE 24 h from the last write.
 * - `pw:{user}`: hash node -> last watch refresh (ms), PEXPIRE = TTL; fields older than the TTL are
 *   dead watchers, skipped and deleted when read.
 * - `pdue`: sorted set user -> when to check the user for offline (refresh + TTL, or close + grace).
 * - `ty:{user}|{conversation}`: the typing start slot, PX = the relay interval.
 *
 * Every status flip happens inside one script, so it is returned to exactly one caller. Timestamps
 * are the nodes' clocks (as in the session driver); versions are Redis time, so they grow across
 * nodes. Node refreshes and watches are written by heartbeats, one call per chunk of users.
 */
export class RedisPresenceDriver extends PresenceStore {
  private readonly redis: Redis;
  private readonly scripts: Scripts;
  private readonly prefix: string;
  private readonly dueKey: string;

  constructor(
    connections: RedisConnections,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.redis = connections.command;
    this.prefix = connections.prefix;
    this.dueKey = `${this.prefix}pdue`;
    this.redis.defineCommand('relayPresenceOnline', { numberOfKeys: 3, lua: ONLINE_SCRIPT });
    this.redis.defineCommand('relayPresenceSweep', { numberOfKeys: 1, lua: SWEEP_SCRIPT });
    this.redis.defineCommand('relayTypingRoute', { numberOfKeys: 1, lua: TYPING_SCRIPT });
    this.redis.defineCommand('relayPresenceWatch', { numberOfKeys: 0, lua: WATCH_SCRIPT });
    this.scripts = this.redis as unknown as Scripts;
  }

  private presenceKey(userId: string): string {
    return `${this.prefix}pr:${userId}`;
  }

  private watchKey(userId: string): string {
    return `${this.prefix}pw:${userId}`;
  }

  async connected(node: string, userIds: string[]): Promise<PresenceChange[]> {
    const replies = await this.chunked(userIds, (p, userId) =>
      (p as unknown as Scripts).relayPresenceOnline(
        this.presenceKey(userId),
        this.watchKey(userId),
        this.dueKey,
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
    await this.chunked(userIds, (p, userId) =>
      p.hdel(this.presenceKey(userId), `n:${node}`).zadd(this.dueKey, at, userId),
    );
  }

  async sweep(limit: number): Promise<PresenceChange[]> {
    const rows = await this.scripts.relayPresenceSweep(
      this.dueKey,
      this.now(),
      this.ttlMs,
      limit,
      this.prefix,
    );
    return rows.map(([userId, version, watchers]) => ({
      userId,
      online: false,
      version: Number(version),
      watchers,
    }));
  }

  async watch(node: string, userIds: string[]): Promise<Map<string, PresenceState>> {
    // Per user: the watch first, then the read, in one script per chunk. A flip that read the
    // watchers before our HSET is in the state we read; one after it is sent to us too (and the
    // gateway drops it by version).
    const now = this.now();
    const chunks: Promise<string[]>[] = [];
    for (let i = 0; i < userIds.length; i += CHUNK) {
      const users = userIds.slice(i, i + CHUNK);
      chunks.push(this.scripts.relayPresenceWatch(node, now, this.ttlMs, this.prefix, ...users));
    }
    const flat = (await Promise.all(chunks)).flat();
    const out = new Map<string, PresenceState>();
    userIds.forEach((userId, i) => out.set(userId, state([flat[2 * i] || null, flat[2 * i + 1]])));
    return out;
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
    const flat = await this.scripts.relayTypingRoute(
      `${this.prefix}ty:${userId}|${conversationId}`,
      state,
      intervalMs,
      this.now(),
      this.ttlMs,
      this.prefix,
      ...recipients,
    );
    if (!flat) return null;
    const routes = new Map<string, string[]>();
    for (let i = 0; i + 1 < flat.length; i += 2) addRoute(routes, flat[i + 1], flat[i]);
    return routes;
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  /** One pipeline per CHUNK users, all chunks at once; replies flattened in user order. */
  private async chunked(
    userIds: string[],
    add: (p: ChainableCommander, userId: string) => unknown,
  ): Promise<unknown[]> {
    if (userIds.length === 0) return [];
    const chunks: Promise<unknown[]>[] = [];
    for (let i = 0; i < userIds.length; i += CHUNK) {
      const p = this.redis.pipeline();
      for (const userId of userIds.slice(i, i + CHUNK)) add(p, userId);
      chunks.push(execChecked(p));
    }
    return (await Promise.all(chunks)).flat();
  }
}

function state(reply: Reply[] | undefined): PresenceState {
  return { online: reply?.[0] === '1', version: Number(reply?.[1] ?? 0) || 0 };
}
