import { randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';

/**
 * ulid's default source calls `crypto.getRandomValues` once per character (16 calls, ~25 us per id with a
 * new millisecond, on every send); this one draws the same CSPRNG bytes from a pool refilled 4 KiB at a time.
 */
const pool = Buffer.alloc(4096);
let used = pool.length;
function pooledRandom(): number {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  return pool[used++] / 256;
}

const next = monotonicFactory(pooledRandom);

/** Server message ids: ULIDs, unique and time-ordered (lexicographic order = creation order within a node). */
export function newMessageId(now: number = Date.now()): string {
  return next(now);
}

/**
 * The same string as one flat, internalized copy. A string sliced out of a longer one (a query
 * parameter out of the request URL, say) keeps that whole parent alive for as long as it is held;
 * ids held per connection (user ids) go through here so they cost their own length only, and every
 * connection of one user shares one copy. V8 internalizes property keys; its string table is weak,
 * so an id nobody holds any more is collected.
 */
export function intern(s: string): string {
  return Object.keys({ [s]: 0 })[0];
}
