import { createHash } from 'node:crypto';

/**
 * Where a user's deliveries (and a conversation's order numbers) live among N outbox shards: jump
 * consistent hash (Lamping & Veach, 2014) of the SHA-256 of the id. Stable across processes and
 * versions (it depends on the id and N only), uniform, and minimal on growth: going from N to N+1
 * shards moves 1/(N+1) of the ids, all of them to the new shard (what `outbox:reshard` relies on).
 */
export function jumpHash(id: string, shards: number): number {
  if (!Number.isSafeInteger(shards) || shards < 1) throw new Error(`shard count must be >= 1, got ${shards}`);
  if (shards === 1) return 0;
  let key = createHash('sha256').update(id).digest().readBigUInt64BE(0);
  let b = -1;
  let j = 0;
  while (j < shards) {
    b = j;
    key = (key * 2862933555777941757n + 1n) & 0xffffffffffffffffn;
    j = Math.floor((b + 1) * (2 ** 31 / (Number(key >> 33n) + 1)));
  }
  return b;
}

/** A fixed shard count; remembers recent answers (the router asks for the same users batch after batch). */
export class ShardPlacement {
  private readonly cache = new Map<string, number>();

  constructor(
    readonly shards: number,
    private readonly cacheSize = 100_000,
  ) {
    jumpHash('', shards); // validates the count
  }

  shardOf(id: string): number {
    let s = this.cache.get(id);
    if (s !== undefined) return s;
    s = jumpHash(id, this.shards);
    if (this.cache.size >= this.cacheSize) this.cache.clear(); // bounded; refilled at the cost of a hash
    this.cache.set(id, s);
    return s;
  }
}
