import { smallInt } from '../../common/small-int';
import { addRoute, PresenceChange, PresenceState, PresenceStore } from '../presence.store';

/**
 * A user's presence. The nodes holding them and each one's last refresh: the first inline (`node`,
 * `at`; one process is one node, so usually the only one), any further ones in `others`; `due`: when
 * the offline check runs. A Map per online user (and an entry in a second map for `due`) would cost
 * ~210 B each. Times are ms since the driver's origin (`rel`), small integers V8 keeps in the field
 * where a Date.now() would cost a 16-byte heap number each.
 */
interface UserPresence {
  online: boolean;
  version: number;
  node: string | null;
  at: number;
  others: Map<string, number> | null;
  due: number;
}

function setNode(p: UserPresence, node: string, at: number): void {
  if (p.node === null || p.node === node) {
    p.node = node;
    p.at = at;
  } else (p.others ??= new Map()).set(node, at);
}

function deleteNode(p: UserPresence, node: string): void {
  if (p.node !== node) {
    p.others?.delete(node);
  } else if (p.others && p.others.size > 0) {
    const [next, at] = p.others.entries().next().value!;
    p.others.delete(next);
    p.node = next;
    p.at = at;
  } else {
    p.node = null;
  }
  if (p.others?.size === 0) p.others = null;
}

/** Every node holding the user, with its last refresh (a copy: callers may delete while they walk it). */
function nodesOf(p: UserPresence | undefined): [string, number][] {
  if (!p || p.node === null) return [];
  const out: [string, number][] = [[p.node, p.at]];
  if (p.others) out.push(...p.others);
  return out;
}

/**
 * PresenceStore in one process (embedded engine), with the Redis driver's rules: node refreshes and
 * watches expire after `ttlMs`, the offline check runs when due, versions only grow.
 */
export class MemoryPresenceDriver extends PresenceStore {
  /** Every user online somewhere, or offline within the grace (their `due` check pending). */
  private readonly users = new Map<string, UserPresence>();
  /** user -> node -> last watch refresh (ms). */
  private readonly watchers = new Map<string, Map<string, number>>();
  /** `${user}|${conversation}` -> start slot claimed until (ms). */
  private readonly typingSlots = new Map<string, number>();
  private lastVersion = 0;

  /** `rel` times count from here. */
  private readonly origin: number;

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.origin = now();
  }

  async connected(node: string, userIds: string[]): Promise<PresenceChange[]> {
    const now = this.now();
    const at = this.rel(now);
    const changes: PresenceChange[] = [];
    for (const userId of userIds) {
      const p = this.user(userId);
      setNode(p, node, at);
      p.due = smallInt(at + this.ttlMs);
      if (p.online) continue;
      p.online = true;
      p.version = this.nextVersion(p.version);
      changes.push({ userId, online: true, version: p.version, watchers: this.liveWatchers(userId, now) });
    }
    return changes;
  }

  async left(node: string, userIds: string[], graceMs: number): Promise<void> {
    const due = this.rel(this.now()) + graceMs;
    for (const userId of userIds) {
      const p = this.users.get(userId);
      if (!p) continue; // never online: nothing to check
      deleteNode(p, node);
      p.due = smallInt(due);
    }
  }

  async sweep(limit: number): Promise<PresenceChange[]> {
    const now = this.now();
    const at = this.rel(now);
    const cutoff = at - this.ttlMs;
    const changes: PresenceChange[] = [];
    let checked = 0;
    // Deleting the entry being visited is safe in a Map walk.
    for (const [userId, p] of this.users) {
      if (p.due > at) continue;
      if (++checked > limit) break;
      let latest = -Infinity;
      for (const [node, t] of nodesOf(p)) {
        if (t >= cutoff) latest = Math.max(latest, t);
        else deleteNode(p, node);
      }
      if (latest > -Infinity) {
        p.due = smallInt(latest + this.ttlMs);
        continue;
      }
      if (!p.online) {
        this.users.delete(userId);
        continue;
      }
      // Forgotten once offline (bounded by the users online): versions keep growing without it.
      this.users.delete(userId);
      const version = this.nextVersion(p.version);
      changes.push({ userId, online: false, version, watchers: this.liveWatchers(userId, now) });
    }
    return changes;
  }

  async watch(node: string, userIds: string[]): Promise<Map<string, PresenceState>> {
    const now = this.now();
    for (const userId of userIds) {
      let nodes = this.watchers.get(userId);
      if (!nodes) this.watchers.set(userId, (nodes = new Map()));
      nodes.set(node, now);
    }
    return this.status(userIds);
  }

  async unwatch(node: string, userIds: string[]): Promise<void> {
    for (const userId of userIds) {
      const nodes = this.watchers.get(userId);
      nodes?.delete(node);
      if (nodes?.size === 0) this.watchers.delete(userId);
    }
  }

  async status(userIds: string[]): Promise<Map<string, PresenceState>> {
    const out = new Map<string, PresenceState>();
    for (const userId of userIds) {
      const p = this.users.get(userId);
      out.set(userId, { online: p?.online ?? false, version: p?.version ?? 0 });
    }
    return out;
  }

  async typingRoute(
    userId: string,
    conversationId: string,
    state: 'start' | 'stop',
    recipients: string[],
    intervalMs: number,
  ): Promise<Map<string, string[]> | null> {
    const now = this.now();
    const slot = `${userId}|${conversationId}`;
    if (state === 'start') {
      if ((this.typingSlots.get(slot) ?? 0) > now) return null;
      this.typingSlots.set(slot, now + intervalMs);
      this.forgetExpiredSlots(now);
    } else {
      this.typingSlots.delete(slot);
    }
    const cutoff = this.rel(now) - this.ttlMs;
    const routes = new Map<string, string[]>();
    for (const user of recipients) {
      const p = this.users.get(user);
      if (!p || p.node === null) continue;
      if (p.at >= cutoff) addRoute(routes, p.node, user);
      for (const [node, t] of p.others ?? []) if (t >= cutoff) addRoute(routes, node, user);
    }
    return routes;
  }

  async ping(): Promise<void> {}

  private user(userId: string): UserPresence {
    let p = this.users.get(userId);
    if (!p)
      this.users.set(userId, (p = { online: false, version: 0, node: null, at: 0, others: null, due: 0 }));
    return p;
  }

  /** A time as ms since `origin` (a small integer: see smallInt). */
  private rel(ms: number): number {
    return smallInt(ms - this.origin);
  }

  /** Grows with time like the Redis driver's (microseconds), never repeats. */
  private nextVersion(prev: number): number {
    this.lastVersion = Math.max(this.now() * 1000, prev + 1, this.lastVersion + 1);
    return this.lastVersion;
  }

  private liveWatchers(userId: string, now: number): string[] {
    const nodes = this.watchers.get(userId);
    if (!nodes) return [];
    const out: string[] = [];
    for (const [node, t] of nodes) {
      if (t >= now - this.ttlMs) out.push(node);
      else nodes.delete(node);
    }
    return out;
  }

  /** Keeps the slot map bounded by the typers of the last interval. */
  private forgetExpiredSlots(now: number): void {
    if (this.typingSlots.size < 1024) return;
    for (const [slot, until] of this.typingSlots) if (until <= now) this.typingSlots.delete(slot);
  }
}
