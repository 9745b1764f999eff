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
   * A counter of entries created, by `add` or by a `touch` that re-creates one: every such call that
   * resolved before this is called is counted in the value it returns (it moves once the entry is
   * readable). The router looks sessions up
   * while the outbox commits and trusts that early lookup only if this did not move meanwhile.
   * -1 when unknown (never equal to a later value).
   */
  abstract additions(): Promise<number>;
  abstract registerNode(node: string): Promise<void>;
  abstract unregisterNode(node: string): Promise<void>;
  abstract liveNodes(): Promise<Set<string>>;
  abstract ping(): Promise<void>;
}
