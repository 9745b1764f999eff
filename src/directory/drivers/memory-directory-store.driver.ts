import { DirectoryStore } from '../conversation-directory';

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

  async ping(): Promise<void> {}
}
