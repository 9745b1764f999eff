import { DirectoryStore, MembersChange, MembersPage } from '../conversation-directory';

export class MemoryDirectoryStoreDriver extends DirectoryStore {
  private readonly conversations = new Map<string, string[]>();

  async get(conversationIds: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const id of conversationIds) {
      const members = this.conversations.get(id);
      if (members) out.set(id, members);
    }
    return out;
  }

  async put(conversationId: string, members: string[]): Promise<void> {
    this.conversations.set(conversationId, [...new Set(members)]);
  }

  async delete(conversationId: string): Promise<boolean> {
    return this.conversations.delete(conversationId);
  }

  // Each call below runs without awaiting in between: atomic on the event loop, so concurrent adds
  // and removes never lose each other. Lists are replaced, never mutated, since get() hands them out.
  async addMembers(conversationId: string, members: string[], maxMembers: number): Promise<MembersChange> {
    const current = this.conversations.get(conversationId) ?? [];
    const present = new Set(current);
    const fresh = [...new Set(members)].filter((m) => !present.has(m));
    if (current.length + fresh.length > maxMembers) return { ok: false, count: current.length };
    const next = fresh.length > 0 ? [...current, ...fresh] : current;
    this.conversations.set(conversationId, next);
    return { ok: true, changed: fresh.length, count: next.length };
  }

  async removeMembers(conversationId: string, members: string[]): Promise<MembersChange | null> {
    const current = this.conversations.get(conversationId);
    if (!current) return null;
    const gone = new Set(members);
    const next = current.filter((m) => !gone.has(m));
    this.conversations.set(conversationId, next);
    return { ok: true, changed: current.length - next.length, count: next.length };
  }

  async listMembers(
    conversationId: string,
    after: string | null,
    limit: number,
  ): Promise<MembersPage | null> {
    const current = this.conversations.get(conversationId);
    if (!current) return null;
    // Ids are ASCII (ID_PATTERN): code-unit order is the byte order the SQL store uses.
    const sorted = current
      .filter((m) => after === null || m > after)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const page = sorted.slice(0, limit);
    return { members: page, next: sorted.length > limit ? page[page.length - 1] : null };
  }

  async ping(): Promise<void> {}
}
