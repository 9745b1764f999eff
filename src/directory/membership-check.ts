/** The answer of a membership check. */
export type Membership = 'member' | 'not_member' | 'no_conversation';

/**
 * The gateway's check of every submission (WebSocket `send`, HTTP publish): is the sender in the
 * conversation, and does it exist? Drivers keep the built-in directory's promise: once a change made
 * through its API has been answered, the very next check on every node sees it (the API calls
 * `changed` after the store committed and before it answers).
 */
export abstract class MembershipCheck {
  abstract check(conversationId: string, userId: string): Promise<Membership>;

  /**
   * The built-in store changed (or may have: called after failures too) `conversationId`: every
   * node's next check must read the store as it is now. Resolves once that holds cluster-wide.
   */
  abstract changed(conversationId: string): Promise<void>;
}

/** The answer for a member list (`null`: no such conversation). */
export function membershipIn(members: readonly string[] | null | undefined, userId: string): Membership {
  if (!members) return 'no_conversation';
  return members.includes(userId) ? 'member' : 'not_member';
}
