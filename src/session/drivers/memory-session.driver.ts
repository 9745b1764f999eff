import { SessionEntry, SessionMap } from '../session-map';

/** In-process session map with the same TTL semantics as the Redis driver (checked on read). */
export class MemorySessionDriver extends SessionMap {
  private readonly users = new Map<string, Map<string, SessionEntry>>();
  private readonly nodes = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
  }

  async add(userId: string, entry: SessionEntry): Promise<void> {
    let conns = this.users.get(userId);
    if (!conns) this.users.set(userId, (conns = new Map()));
    conns.set(entry.connId, { ...entry });
  }

  async remove(userId: string, connId: string): Promise<void> {
    const conns = this.users.get(userId);
    if (!conns) return;
    conns.delete(connId);
    if (conns.size === 0) this.users.delete(userId);
  }

  async touch(entries: { userId: string; entry: SessionEntry }[]): Promise<void> {
    for (const { userId, entry } of entries) await this.add(userId, entry);
  }

  async lookup(userIds: string[]): Promise<Map<string, SessionEntry[]>> {
    const cutoff = this.now() - this.ttlMs;
    const out = new Map<string, SessionEntry[]>();
    for (const userId of userIds) {
      const conns = this.users.get(userId);
      if (!conns) continue;
      const live: SessionEntry[] = [];
      for (const [id, e] of conns) {
        if (e.lastPing >= cutoff) live.push(e);
        else conns.delete(id);
      }
      if (live.length > 0) out.set(userId, live);
      else this.users.delete(userId);
    }
    return out;
  }

  async registerNode(node: string): Promise<void> {
    this.nodes.set(node, this.now());
  }

  async unregisterNode(node: string): Promise<void> {
    this.nodes.delete(node);
  }

  async liveNodes(): Promise<Set<string>> {
    const cutoff = this.now() - this.ttlMs;
    return new Set([...this.nodes].filter(([, at]) => at >= cutoff).map(([n]) => n));
  }

  async ping(): Promise<void> {}
}
