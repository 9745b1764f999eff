import { ConversationDirectory, DirectoryStore } from '../conversation-directory';

/** Reads the built-in store directly: changes made through the API reach the router at once. */
export class BuiltinDirectoryDriver extends ConversationDirectory {
  constructor(private readonly store: DirectoryStore) {
    super();
  }

  async members(conversationIds: string[]): Promise<Map<string, string[] | null>> {
    const found = await this.store.get(conversationIds);
    return new Map(conversationIds.map((id) => [id, found.get(id) ?? null]));
  }

  ping(): Promise<void> {
    return this.store.ping();
  }
}
