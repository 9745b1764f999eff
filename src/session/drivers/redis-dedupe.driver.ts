import { RedisClient, RedisConnections } from '../../redis/redis.module';
import { ACK_RECORD_SCHEMA, compileWireSchema } from '../../protocol/wire-schemas';
import { AckRecord, SendDedupe } from '../send-dedupe';

/**
 * Dedupe records on Redis: `<prefix>dedupe:{<userId>}:<ref>` -> JSON AckRecord, expiring after the window
 * (the user id is the hash tag: on a Redis Cluster a user's records share a slot).
 *
 * `reserve` is a single `SET key candidate NX GET PX window` (Redis >= 7.0): atomic across nodes, and
 * concurrent reserves share round trips through the command connection's auto-pipelining. The user id
 * is URI-encoded in the key because user ids may contain ':' and refs are arbitrary strings: without it
 * ("a", "b:c") and ("a:b", "c") would share a key, and one user would get another's ack.
 */
export class RedisDedupeDriver extends SendDedupe {
  private readonly redis: RedisClient;
  private readonly prefix: string;

  constructor(
    connections: RedisConnections,
    private readonly windowMs: number,
  ) {
    super();
    this.redis = connections.command;
    this.prefix = connections.prefix;
  }

  key(userId: string, ref: string): string {
    return `${this.prefix}dedupe:{${encodeURIComponent(userId)}}:${ref}`;
  }

  async reserve(userId: string, ref: string, candidate: AckRecord): Promise<AckRecord | null> {
    const record: AckRecord = {
      id: candidate.id,
      ts: candidate.ts,
      conversation_id: candidate.conversation_id,
    };
    const existing = await this.redis.set(
      this.key(userId, ref),
      JSON.stringify(record),
      'PX',
      this.windowMs,
      'NX',
      'GET',
    );
    return existing === null ? null : decode(existing, userId, ref);
  }

  async release(userId: string, ref: string, candidate: AckRecord): Promise<void> {
    // Compare-and-delete in one step: another node may have replaced the key since (after expiry).
    await this.redis.eval(RELEASE_SCRIPT, 1, this.key(userId, ref), `"id":${JSON.stringify(candidate.id)}`);
  }
}

/** Deletes KEYS[1] when its record carries the candidate's id (the reserved JSON contains it verbatim). */
const RELEASE_SCRIPT = `local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
return 0`;

const isAckRecord = compileWireSchema<AckRecord>(ACK_RECORD_SCHEMA);

function decode(raw: string, userId: string, ref: string): AckRecord {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    v = undefined;
  }
  // Reusing garbage as an ack would be worse than failing the send (the client retries with the same ref).
  if (!isAckRecord(v)) throw new Error(`malformed dedupe record for ${userId}/${ref}`);
  return { id: v.id, ts: v.ts, conversation_id: v.conversation_id };
}
