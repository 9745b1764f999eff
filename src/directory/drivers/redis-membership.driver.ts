import { randomUUID } from 'node:crypto';
import { Batcher } from '../../common/batcher';
import { execChecked, RedisClient, RedisConnections } from '../../redis/redis.module';
import { DirectoryStore } from '../conversation-directory';
import { Membership, MembershipCheck, membershipIn } from '../membership-check';

/** Set members that cannot be user ids (ids match ID_PATTERN: 1+ chars of [A-Za-z0-9_.:@-]). */
const EXISTS = '';
const MISSING = '#';

export interface RedisMembershipOptions {
  /** Life of a loaded set (not refreshed by checks): bounds memory, and staleness if a change's invalidation failed. */
  setTtlMs: number;
  /** Life of a conversation's version token after its last change; loads longer than half of it are not cached. */
  versionTtlMs: number;
}

export const DEFAULT_REDIS_MEMBERSHIP_OPTIONS: RedisMembershipOptions = {
  setTtlMs: 60_000,
  versionTtlMs: 3_600_000,
};

/**
 * The built-in directory's membership as a Redis Set per conversation, so the per-send check is one
 * `SMISMEMBER` that ioredis auto-pipelines with the send's dedupe `SET NX` (one round trip for both)
 * instead of a MariaDB query. The store stays the source of truth; the sets are a shared cache that is
 * exact at every answer of the directory API:
 *
 * - Keys, hash-tagged by conversation (one slot on a Redis Cluster): `<prefix>dir:{<conversation>}:m`, the
 *   set (its members, plus "" when the conversation exists or "#" when it does not: unknown
 *   conversations are cached too), and `<prefix>dir:{<conversation>}:v`, a version token.
 * - A change (the API, after the store committed, before it answers: `changed`) sets a fresh random
 *   version token and deletes the set, in one MULTI. The next check anywhere misses and loads.
 * - A miss loads from the store: read the version token, then the store, then write the set in a script
 *   only if the token is still the one read. A change that committed before the token was read is in
 *   what the store returned; one whose invalidation ran after it changed the token, so the stale list
 *   is dropped, never written (the check itself still answers from its own, fresh enough, read). Tokens
 *   are random, so a token cannot come back (no ABA); a token expires `versionTtlMs` after its change,
 *   and a load that took more than half of that does not write.
 * - Misses of one tick share one load (a Batcher: a load always starts after the misses it answers, so
 *   a check never gets a list read before a change that was answered before it).
 * - The set expires `setTtlMs` after it was loaded: memory is bounded by the conversations active in that
 *   window, and a change whose invalidation failed (the API answered 503: retry) is seen by then.
 */
export class RedisMembershipDriver extends MembershipCheck {
  private readonly redis: RedisClient;
  private readonly prefix: string;
  private readonly opts: RedisMembershipOptions;
  private readonly loads: Batcher<string, string[] | null>;

  constructor(
    connections: RedisConnections,
    private readonly store: DirectoryStore,
    options: Partial<RedisMembershipOptions> = {},
  ) {
    super();
    this.redis = connections.command;
    this.prefix = connections.prefix;
    this.opts = { ...DEFAULT_REDIS_MEMBERSHIP_OPTIONS, ...options };
    this.loads = new Batcher((ids) => this.load(ids));
  }

  membersKey(conversationId: string): string {
    return `${this.prefix}dir:{${encodeURIComponent(conversationId)}}:m`;
  }

  versionKey(conversationId: string): string {
    return `${this.prefix}dir:{${encodeURIComponent(conversationId)}}:v`;
  }

  async check(conversationId: string, userId: string): Promise<Membership> {
    const [exists, missing, member] = await this.redis.smismember(
      this.membersKey(conversationId),
      EXISTS,
      MISSING,
      userId,
    );
    if (missing === 1) return 'no_conversation';
    if (exists === 1) return member === 1 ? 'member' : 'not_member';
    return membershipIn(await this.loads.add(conversationId), userId);
  }

  async changed(conversationId: string): Promise<void> {
    await execChecked(
      this.redis
        .multi()
        .set(this.versionKey(conversationId), randomUUID(), 'PX', this.opts.versionTtlMs)
        .del(this.membersKey(conversationId)),
    );
  }

  /** One Batcher flush: the misses' tokens (one pipeline), one store read, then the guarded writes. */
  private async load(ids: string[]): Promise<(string[] | null)[]> {
    const unique = [...new Set(ids)];
    const startedAt = Date.now();
    const tokens = await Promise.all(unique.map((id) => this.redis.get(this.versionKey(id))));
    const found = await this.store.get(unique);
    if (Date.now() - startedAt < this.opts.versionTtlMs / 2) {
      await Promise.all(
        unique.map((id, i) => {
          const members = found.get(id);
          return this.redis.eval(
            LOAD_SCRIPT,
            2,
            this.membersKey(id),
            this.versionKey(id),
            tokens[i] ?? '',
            this.opts.setTtlMs,
            ...(members ? [EXISTS, ...members] : [MISSING]),
          );
        }),
      );
    }
    return ids.map((id) => found.get(id) ?? null);
  }
}

/**
 * KEYS: set, version; ARGV: token read before the store (or ""), TTL ms, the set's members. Writes the
 * set only if the version token is unchanged (SADD in chunks: Lua's unpack has a stack limit).
 */
const LOAD_SCRIPT = `if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 1000 do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;
