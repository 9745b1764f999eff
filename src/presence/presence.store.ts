/** A user's announced presence. `version` orders changes of one user cluster-wide (higher is newer). */
export interface PresenceState {
  online: boolean;
  version: number;
}

/** A user whose announced status changed, and the gateway nodes that watch them (to be told). */
export interface PresenceChange extends PresenceState {
  userId: string;
  watchers: string[];
}

/**
 * Who is online, shared by every gateway (v1.1 presence and typing; docs/architecture.md "Live
 * features"). Nothing here is durable: losing it costs at most one wrong status until the next
 * heartbeat refresh re-announces the online users.
 *
 * - A user is online while some node holds a connection of theirs and refreshes that fact within
 *   the session TTL. The announced status flips to online at once (`connected`) and to offline only
 *   when a `sweep` finds no live node any more, which a node's `left` schedules after the grace, and
 *   the TTL schedules after a crash. Every flip is returned exactly once cluster-wide, with a version.
 * - Nodes `watch` the users their subscribers can see; a change is sent only to the watching nodes,
 *   so its cost follows the subscribers, not the number of conversations the user is in.
 * - `typingRoute` tells which nodes hold the recipients of a typing event, and throttles `start`s.
 */
export abstract class PresenceStore {
  /**
   * `node` holds connections of these users (their first one there, and every heartbeat): refreshes
   * them and returns those whose announced status turned online.
   */
  abstract connected(node: string, userIds: string[]): Promise<PresenceChange[]>;
  /** `node` no longer holds a connection of these users: check them for offline after `graceMs`. */
  abstract left(node: string, userIds: string[], graceMs: number): Promise<void>;
  /** Users due for the offline check that have no live node: announced offline, each once cluster-wide. */
  abstract sweep(limit: number): Promise<PresenceChange[]>;
  /** Registers (or refreshes, each heartbeat) `node` as a watcher of the users and returns their announced state. */
  abstract watch(node: string, userIds: string[]): Promise<Map<string, PresenceState>>;
  abstract unwatch(node: string, userIds: string[]): Promise<void>;
  /** The announced state of each user (users never seen are offline, version 0). */
  abstract status(userIds: string[]): Promise<Map<string, PresenceState>>;
  /**
   * A typing event of `userId` in `conversationId`: a `start` claims the user's slot for
   * `intervalMs` (null: claimed already, do not relay); a `stop` frees it. Returns the live nodes
   * holding each recipient: node -> recipients there.
   */
  abstract typingRoute(
    userId: string,
    conversationId: string,
    state: 'start' | 'stop',
    recipients: string[],
    intervalMs: number,
  ): Promise<Map<string, string[]> | null>;
  abstract ping(): Promise<void>;
}

/** Adds `user` to `node`'s list in a node -> users map. */
export function addRoute(routes: Map<string, string[]>, node: string, user: string): void {
  const users = routes.get(node);
  if (users) users.push(user);
  else routes.set(node, [user]);
}
