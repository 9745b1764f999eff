import { Batcher } from '../common/batcher';
import { ConversationDirectory } from '../directory/conversation-directory';

/** Conversations remembered at once; the oldest entry goes first beyond it. */
const MAX_ENTRIES = 10_000;

interface Entry {
  members: readonly string[] | null;
  memberSet: ReadonlySet<string> | null;
  expiresAt: number;
}

/** A conversation's members as the live features see them: `null` = the conversation does not exist. */
export interface Membership {
  members: readonly string[] | null;
  has(userId: string): boolean;
}

/**
 * Members per conversation for typing and presence, so a keystroke never costs a directory round
 * trip. The directory's own caching rules apply: answers, "not found" included, are kept for
 * DIRECTORY_CACHE_TTL_MS (0 = every lookup asks the directory); failures are not kept. Concurrent
 * misses share one directory call. A membership change therefore reaches typing and presence within
 * that TTL, as it reaches sends through the HTTP directory's cache.
 */
export class MembershipCache {
  private readonly entries = new Map<string, Entry>();
  private readonly misses: Batcher<string, readonly string[] | null>;

  constructor(
    directory: ConversationDirectory,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.misses = new Batcher<string, readonly string[] | null>(async (ids) => {
      const found = await directory.members([...new Set(ids)]);
      return ids.map((id) => found.get(id) ?? null);
    });
  }

  async of(conversationId: string): Promise<Membership> {
    const now = this.now();
    let entry = this.entries.get(conversationId);
    if (!entry || entry.expiresAt <= now) {
      const members = await this.misses.add(conversationId);
      entry = { members, memberSet: members && new Set(members), expiresAt: now + this.ttlMs };
      this.remember(conversationId, entry);
    }
    const set = entry.memberSet;
    return { members: entry.members, has: (userId) => set?.has(userId) ?? false };
  }

  private remember(conversationId: string, entry: Entry): void {
    if (this.ttlMs <= 0) return;
    this.entries.delete(conversationId);
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(conversationId, entry);
  }
}
