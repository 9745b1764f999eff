import { ConversationDirectory } from '../directory/conversation-directory';

/** Conversations remembered at once; the least recently filled go first beyond it. */
const MAX_ENTRIES = 20_000;
/**
 * Longest an entry is trusted without a membership record. Bounds what a router could miss while
 * the conversation's partition was another router's (a change seen there, then the partition came
 * back): the records of a partition reach only the router that owns it.
 */
export const ROUTER_MEMBERS_TTL_MS = 2_000;

interface Entry {
  members: string[] | null;
  expiresAt: number;
}

/**
 * The router's member lists, so a bus batch does not wait on a directory query every time.
 *
 * Invariants:
 * - Only for the built-in directory, whose every change (PUT/POST/DELETE members, delete) writes a
 *   `membership` record to the conversation's partition after the change is stored, in order with
 *   the conversation's messages. The router drops the conversation's entry when it sees one
 *   (`forget`, before the batch's members are read), so messages published after the change are
 *   routed with the new list, as they were when every batch read the directory.
 * - A partition's batches run one at a time, and a conversation lives in one partition, so a fill
 *   and the forget of the same conversation never race.
 * - An HTTP directory writes no records: nothing is kept here (its driver has its own TTL cache).
 * - Failures are not kept; entries expire after ROUTER_MEMBERS_TTL_MS.
 */
export class RouterMembers {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly directory: ConversationDirectory,
    private readonly enabled: boolean,
    private readonly now: () => number = Date.now,
  ) {}

  /** A membership record of the conversation was seen: its list is read again next time. */
  forget(conversationId: string): void {
    this.entries.delete(conversationId);
  }

  async members(conversationIds: string[]): Promise<Map<string, string[] | null>> {
    if (!this.enabled) return this.directory.members(conversationIds);
    const now = this.now();
    const out = new Map<string, string[] | null>();
    const missing: string[] = [];
    for (const id of conversationIds) {
      const e = this.entries.get(id);
      if (e && e.expiresAt > now) out.set(id, e.members);
      else missing.push(id);
    }
    if (missing.length === 0) return out;
    const found = await this.directory.members(missing);
    const expiresAt = this.now() + ROUTER_MEMBERS_TTL_MS;
    for (const id of missing) {
      const members = found.get(id) ?? null;
      out.set(id, members);
      this.entries.delete(id);
      if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string);
      this.entries.set(id, { members, expiresAt });
    }
    return out;
  }
}
