/**
 * A Set that remembers at most `capacity` keys, forgetting the oldest first. Memory stays bounded
 * no matter how long the client runs; the price is that a duplicate older than the window is not
 * recognised (see README, non-guarantees).
 */
export class BoundedSet {
  private readonly keys = new Set<string>();
  // Ring buffer of insertion order, so eviction is O(1) without Array.shift().
  private readonly ring: (string | undefined)[];
  private head = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('BoundedSet: capacity must be >= 1');
    this.ring = new Array<string | undefined>(capacity);
  }

  get size(): number {
    return this.keys.size;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  add(key: string): void {
    if (this.keys.has(key)) return;
    const evicted = this.ring[this.head];
    if (evicted !== undefined) this.keys.delete(evicted);
    this.ring[this.head] = key;
    this.head = (this.head + 1) % this.capacity;
    this.keys.add(key);
  }

  clear(): void {
    this.keys.clear();
    this.ring.fill(undefined);
    this.head = 0;
  }
}

/** What to do with an inbound `message` frame. */
export type Verdict =
  /** New: hand it to the app, then advance the cursor. */
  | 'deliver'
  /** Same message id under a new cursor (the server delivered it twice): advance the cursor only. */
  | 'advance'
  /** A cursor already processed (a replay after reconnect): ignore entirely; the cursor never moves back. */
  | 'skip';

/**
 * Exactly-once filter for deliveries. Cursors are compared only for equality (they are opaque);
 * message ids catch the same message arriving under a different cursor.
 */
export class Deduper {
  private readonly cursors: BoundedSet;
  private readonly ids: BoundedSet;

  constructor(capacity = 10_000) {
    this.cursors = new BoundedSet(capacity);
    this.ids = new BoundedSet(capacity);
  }

  /**
   * Classifies and records a delivery. `lastCursor` is the last one delivered (possibly loaded from
   * storage, in which case it is not in the window yet).
   */
  check(cursor: string, id: string, lastCursor: string | undefined): Verdict {
    if (cursor === lastCursor || this.cursors.has(cursor)) return 'skip';
    this.cursors.add(cursor);
    if (this.ids.has(id)) return 'advance';
    this.ids.add(id);
    return 'deliver';
  }

  /**
   * Forgets the cursors (not the message ids). Called when the server moved the client to a new
   * position (`recovered: false`): the cursors remembered so far were positions relative to the old
   * one (possibly in a store that was reset and issues the same strings again), so only the new
   * position and the ids still say what was delivered.
   */
  forgetCursors(): void {
    this.cursors.clear();
  }
}
