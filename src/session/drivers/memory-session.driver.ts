import { smallInt } from '../../common/small-int';
import { REGISTRATION_BUCKETS, registrationBucket, SessionEntry, SessionMap } from '../session-map';

/**
 * One entry as kept here: times as ms since the driver's origin, small integers (smallInt) V8 stores
 * in the field, where the entry's Date.now() values would cost a 16-byte heap number each. A class,
 * not an object literal: literals with SessionEntry's keys share one V8 shape, whose time fields hold
 * doubles (boxed). `lookup` hands out SessionEntry copies.
 */
class Held {
  constructor(
    readonly connId: string,
    readonly node: string,
    readonly connectedAt: number,
    readonly lastPing: number,
  ) {}
}

/**
 * A user's entries: the one entry itself (most users have one connection), or a map by connection id
 * from the second one on. A map per user would cost ~170 B for every connected user.
 */
type UserEntries = Held | Map<string, Held>;

/** In-process session map with the same TTL semantics as the Redis driver (checked on read). */
export class MemorySessionDriver extends SessionMap {
  private readonly users = new Map<string, UserEntries>();
  private readonly nodes = new Map<string, number>();
  private readonly origin: number;
  private readonly registered = new Array<number>(REGISTRATION_BUCKETS).fill(0);

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.origin = now();
  }

  async add(userId: string, entry: SessionEntry): Promise<void> {
    this.put(userId, this.hold(entry));
    this.registered[registrationBucket(userId)]++;
  }

  async registrations(buckets: readonly number[]): Promise<number[]> {
    return buckets.map((b) => this.registered[b] ?? 0);
  }

  async remove(userId: string, connId: string): Promise<void> {
    const held = this.users.get(userId);
    if (held === undefined) return;
    if (!(held instanceof Map)) {
      if (held.connId === connId) this.users.delete(userId);
      return;
    }
    held.delete(connId);
    if (held.size === 1) this.users.set(userId, held.values().next().value!);
    else if (held.size === 0) this.users.delete(userId);
  }

  async touch(entries: { userId: string; entry: SessionEntry }[]): Promise<void> {
    for (const { userId, entry } of entries) {
      if (this.put(userId, this.hold(entry))) this.registered[registrationBucket(userId)]++;
    }
  }

  async lookup(userIds: string[]): Promise<Map<string, SessionEntry[]>> {
    const cutoff = this.now() - this.ttlMs - this.origin;
    const out = new Map<string, SessionEntry[]>();
    for (const userId of userIds) {
      const held = this.users.get(userId);
      if (held === undefined) continue;
      if (!(held instanceof Map)) {
        if (held.lastPing >= cutoff) out.set(userId, [this.entryOf(held)]);
        else this.users.delete(userId);
        continue;
      }
      const live: SessionEntry[] = [];
      for (const [id, e] of held) {
        if (e.lastPing >= cutoff) live.push(this.entryOf(e));
        else held.delete(id);
      }
      if (live.length > 0) out.set(userId, live);
      else this.users.delete(userId);
      if (held.size === 1) this.users.set(userId, held.values().next().value!);
    }
    return out;
  }

  private hold(e: SessionEntry): Held {
    return new Held(
      e.connId,
      e.node,
      smallInt(e.connectedAt - this.origin),
      smallInt(e.lastPing - this.origin),
    );
  }

  private entryOf(h: Held): SessionEntry {
    return {
      connId: h.connId,
      node: h.node,
      connectedAt: h.connectedAt + this.origin,
      lastPing: h.lastPing + this.origin,
    };
  }

  /** Stores (or replaces) one entry, keeping the one-entry form while the user has a single connection. */
  /** Writes the entry; true when it was not there (a new connection, or one re-created by `touch`). */
  private put(userId: string, entry: Held): boolean {
    const held = this.users.get(userId);
    if (held === undefined || (!(held instanceof Map) && held.connId === entry.connId)) {
      this.users.set(userId, entry);
      return held === undefined;
    } else if (held instanceof Map) {
      const created = !held.has(entry.connId);
      held.set(entry.connId, entry);
      return created;
    } else {
      this.users.set(
        userId,
        new Map([
          [held.connId, held],
          [entry.connId, entry],
        ]),
      );
      return true;
    }
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
