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
  /**
   * Adds members (creating the conversation if missing), without touching the others: concurrent
   * adds never lose each other. Idempotent (present ids are left as they are). Refused as a whole,
   * nothing added, when the conversation would exceed `maxMembers`.
   */
  abstract addMembers(conversationId: string, members: string[], maxMembers: number): Promise<MembersChange>;
  /** Removes members (absent ids are fine); null when the conversation does not exist. */
  abstract removeMembers(conversationId: string, members: string[]): Promise<MembersChange | null>;
  /**
   * One page of members in id order (binary), after the member id `after`; `next` is the cursor of the
   * next page (null on the last one). Null when the conversation does not exist.
   */
  abstract listMembers(
    conversationId: string,
    after: string | null,
    limit: number,
  ): Promise<MembersPage | null>;
  abstract ping(): Promise<void>;
}

/** Outcome of an add or remove: `changed` ids actually added/removed, `count` members afterwards. */
export type MembersChange = { ok: true; changed: number; count: number } | { ok: false; count: number };

export interface MembersPage {
  members: string[];
  next: string | null;
}
