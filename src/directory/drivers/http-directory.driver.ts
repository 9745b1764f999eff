import { ConversationDirectory, DirectoryUnavailableError } from '../conversation-directory';

/** Answers that say the service, not the conversation, is the problem (auth, rate limit, overload). */
const UNAVAILABLE_STATUS = new Set([401, 403, 407, 408, 429]);

interface CacheEntry {
  members: string[] | null;
  expiresAt: number;
}

/**
 * Upstream conversation service: `GET {base}/conversations/{id}/members` -> `{"members": [...]}`,
 * 404 -> conversation does not exist. Answers (including 404) are cached for `ttlMs`; concurrent
 * lookups of the same id share one request.
 */
export class HttpDirectoryDriver extends ConversationDirectory {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<string[] | null>>();

  constructor(
    private readonly baseUrl: string,
    private readonly ttlMs: number,
    private readonly timeoutMs: number,
    private readonly maxEntries = 100_000,
  ) {
    super();
  }

  async members(conversationIds: string[]): Promise<Map<string, string[] | null>> {
    const now = Date.now();
    const out = new Map<string, string[] | null>();
    const pending: Promise<void>[] = [];
    for (const id of new Set(conversationIds)) {
      const hit = this.cache.get(id);
      if (hit && hit.expiresAt > now) {
        out.set(id, hit.members);
        continue;
      }
      pending.push(this.fetchOnce(id).then((m) => void out.set(id, m)));
    }
    await Promise.all(pending);
    return out;
  }

  private fetchOnce(id: string): Promise<string[] | null> {
    let p = this.inflight.get(id);
    if (!p) {
      p = this.fetchMembers(id).finally(() => this.inflight.delete(id));
      this.inflight.set(id, p);
    }
    return p;
  }

  private async fetchMembers(id: string): Promise<string[] | null> {
    const res = await fetch(`${this.baseUrl}/conversations/${encodeURIComponent(id)}/members`, {
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    let members: string[] | null;
    if (res.status === 404) {
      members = null;
    } else if (res.status >= 500 || UNAVAILABLE_STATUS.has(res.status)) {
      throw new DirectoryUnavailableError(`conversation service answered ${res.status}`);
    } else if (!res.ok) {
      throw new Error(`conversation service answered ${res.status}`);
    } else {
      const body = (await res.json()) as { members?: unknown };
      if (!Array.isArray(body.members)) throw new Error('conversation service sent no members array');
      members = body.members.map(String);
    }
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(id, { members, expiresAt: Date.now() + this.ttlMs });
    return members;
  }

  async ping(): Promise<void> {
    const res = await fetch(this.baseUrl, { method: 'HEAD', signal: AbortSignal.timeout(this.timeoutMs) });
    if (res.status >= 500) throw new DirectoryUnavailableError(`conversation service answered ${res.status}`);
  }
}
