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
