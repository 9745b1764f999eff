/**
 * The directory could not answer right now (upstream overloaded, failing, refusing our credentials):
 * a dependency outage, not something wrong with the conversation asked about. Callers retry later.
 */
export class DirectoryUnavailableError extends Error {
  override readonly name = 'DirectoryUnavailableError';
}

/** Who is in a conversation. `null` means the conversation does not exist. */
export abstract class ConversationDirectory {
  abstract members(conversationIds: string[]): Promise<Map<string, string[] | null>>;
  abstract ping(): Promise<void>;
}

/** Storage behind the built-in directory (managed through /v1/conversations). */
export abstract class DirectoryStore {
  abstract get(conversationIds: string[]): Promise<Map<string, string[]>>;
  abstract put(conversationId: string, members: string[]): Promise<void>;
  /** Returns false when there was nothing to delete. */
  abstract delete(conversationId: string): Promise<boolean>;
  abstract ping(): Promise<void>;
}
