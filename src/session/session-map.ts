/** One open connection of a user, as the router sees it. */
export interface SessionEntry {
  connId: string;
  node: string;
  connectedAt: number;
  lastPing: number;
}

/**
 * `user_id -> connections`, shared by every node. Entries carry a TTL refreshed by heartbeats, so
 * a crashed node's entries disappear without anyone cleaning up; nodes register themselves with a
 * TTL too, so the router skips a dead node before its users' entries have expired.
 */
export abstract class SessionMap {
  abstract add(userId: string, entry: SessionEntry): Promise<void>;
  abstract remove(userId: string, connId: string): Promise<void>;
  /** Batched heartbeat: refreshes last_ping and TTL of many entries in one round trip. */
  abstract touch(entries: { userId: string; entry: SessionEntry }[]): Promise<void>;
  /** Live entries (TTL not elapsed) of each user; users without any are absent from the map. */
  abstract lookup(userIds: string[]): Promise<Map<string, SessionEntry[]>>;
  /**
   * Registration counters, one per bucket of users (`registrationBucket`): creating an entry (by
   * `add`, or by a `touch` that re-creates one) moves its user's bucket once the entry is readable,
   * and every such call that resolved before this one is counted in what it returns. The router looks
   * sessions up while the outbox commits and looks up again, after it, the users whose bucket moved
   * meanwhile. One value per bucket asked, in order; 0 for a bucket that never moved.
   */
  abstract registrations(buckets: readonly number[]): Promise<number[]>;
  abstract registerNode(node: string): Promise<void>;
  abstract unregisterNode(node: string): Promise<void>;
  abstract liveNodes(): Promise<Set<string>>;
  abstract ping(): Promise<void>;
}

/** How many registration counters the users are spread over (see `SessionMap.registrations`). */
export const REGISTRATION_BUCKETS = 64;

/** A user's registration bucket: FNV-1a of the id, the same in every process. */
export function registrationBucket(userId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) {
    h ^= userId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % REGISTRATION_BUCKETS;
}
