import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { PresenceEvents } from '../bus/presence-events';
import { RateLimitedLog } from '../common/rate-limited-log';
import { Config } from '../config/config.module';
import { ClientFrame, ErrorCode } from '../protocol/frames';
import { MembershipCache } from '../presence/membership.cache';
import { PresenceChange, PresenceState, PresenceStore } from '../presence/presence.store';
import { EphemeralBatch, NodeChannel } from '../session/node-channel';
import { MetricsService } from '../metrics/metrics.service';
import { Connection } from './connection';
import { ConnectionLifecycle, ConnectionRegistry } from './connection.registry';
import { Containment } from './containment';
import { TypingService } from './typing.service';

type PresenceFrame = Extract<ClientFrame, { type: 'presence.subscribe' | 'presence.unsubscribe' }>;
type PresenceItem = NonNullable<EphemeralBatch['presence']>[number];

/** Users whose offline check one sweep call takes on. */
const SWEEP_LIMIT = 500;
/** Members one connection's subscriptions may cover together, in PRESENCE_MAX_MEMBERS: bounds the index per connection. */
const WATCHED_PER_CONNECTION = 5;

/** One conversation a connection watches. `ready` once its snapshot is out (changes wait until then). */
interface Subscription {
  members: readonly string[];
  ready: boolean;
}

/**
 * v1.1 presence on this node (docs/architecture.md "Live features"), and the node's end of the
 * ephemeral channel (typing batches go to TypingService).
 *
 * - Online: every connection opened or closed on this node, whatever its transport, reaches
 *   `opened`/`closed` (ConnectionRegistry). The user's first connection here marks them online in
 *   the store; their last one asks for the offline check after PRESENCE_GRACE_MS. Each heartbeat
 *   refreshes this node's users (a crashed node's users go offline once the TTL passes) and
 *   re-announces anyone the store lost. A sweep announces the offline checks that fell due.
 * - Subscriptions: `watching` maps each member a local connection watches to those connections and
 *   conversations, and the node registers itself as a watcher of that user in the store, so a change
 *   costs one publish per watching node and one frame per watching subscription.
 *
 * Invariants (event loop only, no locks): a user is in `known` iff some local subscription watches
 * them; `known` only moves to a higher version, so a change older than what a subscriber saw is
 * dropped; a subscription gets its snapshot before any change (changes skip it until `ready`).
 */
@Injectable()
export class PresenceHub implements ConnectionLifecycle, OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(PresenceHub.name);
  private readonly boundary: Containment;
  private readonly subs = new WeakMap<Connection, Map<string, Subscription>>();
  /** member -> watching connection -> conversations. */
  private readonly watching = new Map<string, Map<Connection, Set<string>>>();
  /** The last state seen of every watched user. */
  private readonly known = new Map<string, PresenceState>();
  private timers: NodeJS.Timeout[] = [];
  private readonly maxWatched: number;
  /** Timer work still running: a slow store makes the next tick skip, not pile up. */
  private readonly busy = new Set<string>();
  private readonly streamFailures = new RateLimitedLog((line) => this.logger.warn(line));

  constructor(
    private readonly config: Config,
    private readonly store: PresenceStore,
    private readonly membership: MembershipCache,
    private readonly channel: NodeChannel,
    private readonly registry: ConnectionRegistry,
    private readonly typing: TypingService,
    private readonly events: PresenceEvents,
    metrics: MetricsService,
  ) {
    this.boundary = new Containment(metrics, this.logger);
    this.maxWatched = WATCHED_PER_CONNECTION * config.live.presenceMaxMembers;
  }

  onApplicationBootstrap(): void {
    this.registry.observe(this);
    this.channel.listenEphemeral((batch) =>
      this.boundary.guard('ephemeral', null, () => this.onEphemeral(batch)),
    );
    const { heartbeatMs } = this.config.gateway;
    const { presenceGraceMs } = this.config.live;
    // Often enough that an offline is announced within a fraction of the grace (or TTL) of falling due.
    const sweepMs = Math.max(50, Math.min(1_000, Math.min(presenceGraceMs, this.config.sessionTtlMs) / 4));
    this.timers = [
      setInterval(() => this.runOnce('presence.refresh', () => this.refresh()), heartbeatMs),
      setInterval(() => this.runOnce('presence.sweep', () => this.sweep()), sweepMs),
    ];
    for (const t of this.timers) t.unref();
  }

  onApplicationShutdown(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.channel.listenEphemeral(null);
  }

  // ---- connection lifecycle ----

  opened(conn: Connection, userFirst: boolean): void {
    if (!userFirst) return;
    this.run('presence.online', async () =>
      this.announce(await this.store.connected(this.node, [conn.userId])),
    );
  }

  closed(conn: Connection, userLast: boolean): void {
    const subs = this.subs.get(conn);
    if (subs) {
      this.subs.delete(conn);
      for (const [conversationId, sub] of subs) this.unindex(conn, conversationId, sub.members);
    }
    if (!userLast) return;
    this.typing.lastConnectionClosed(conn.userId);
    this.run('presence.left', () =>
      this.store.left(this.node, [conn.userId], this.config.live.presenceGraceMs),
    );
  }

  // ---- frames ----

  handle(conn: Connection, frame: PresenceFrame): void {
    const conversationId = frame.payload.conversation_id;
    let subs = this.subs.get(conn);
    const previous = subs?.get(conversationId);
    if (frame.type === 'presence.unsubscribe') {
      if (previous) this.drop(conn, conversationId, previous);
      return;
    }
    const max = this.config.live.presenceMaxSubscriptions;
    if (!previous && (subs?.size ?? 0) >= max) {
      return conn.sendError(
        'rate_limited',
        `at most ${max} presence subscriptions per connection`,
        frame.msg_id,
      );
    }
    if (!subs) this.subs.set(conn, (subs = new Map()));
    // The slot is taken now, in frame order: a later unsubscribe or re-subscribe replaces it, and the
    // pending subscribe then notices and stops. A re-subscribe starts over with a fresh snapshot.
    if (previous) this.unindex(conn, conversationId, previous.members);
    const sub: Subscription = { members: [], ready: false };
    subs.set(conversationId, sub);
    void this.subscribe(conn, conversationId, sub, frame.msg_id).catch((err: Error) => {
      this.logger.warn(`presence subscribe failed: ${err.message}`);
      if (this.subs.get(conn)?.get(conversationId) !== sub) return;
      this.drop(conn, conversationId, sub);
      conn.sendError('unavailable', 'presence could not be read, try later', frame.msg_id);
    });
  }

  private async subscribe(
    conn: Connection,
    conversationId: string,
    sub: Subscription,
    ref?: string,
  ): Promise<void> {
    const membership = await this.membership.of(conversationId);
    if (!this.holds(conn, conversationId, sub)) return; // unsubscribed, replaced or closed meanwhile
    const members = membership.members;
    let refusal: [ErrorCode, string] | null = null;
    if (!members) refusal = ['not_found', `conversation ${conversationId} does not exist`];
    else if (!membership.has(conn.userId)) {
      refusal = ['forbidden', `you are not a member of conversation ${conversationId}`];
    } else if (members.length > this.config.live.presenceMaxMembers) {
      const max = this.config.live.presenceMaxMembers;
      refusal = [
        'too_large',
        `conversation ${conversationId} has ${members.length} members; presence covers at most ${max}`,
      ];
    }
    if (!refusal && members && this.watchedBy(conn) + members.length > this.maxWatched) {
      refusal = [
        'rate_limited',
        `presence subscriptions of one connection cover at most ${this.maxWatched} members`,
      ];
    }
    if (refusal || !members) {
      this.drop(conn, conversationId, sub);
      if (refusal) conn.sendError(refusal[0], refusal[1], ref);
      return;
    }
    sub.members = members;
    const fresh = this.index(conn, conversationId, members);
    if (fresh.length > 0) {
      const states = await this.store.watch(this.node, fresh);
      for (const [user, state] of states) this.learn(user, state);
    }
    if (!this.holds(conn, conversationId, sub)) return;
    sub.ready = true;
    const online = members.filter((m) => this.known.get(m)?.online);
    conn.sendRaw(JSON.stringify({ type: 'presence', payload: { conversation_id: conversationId, online } }));
  }

  /** Members covered by the connection's subscriptions (at most PRESENCE_MAX_SUBSCRIPTIONS to add up). */
  private watchedBy(conn: Connection): number {
    let n = 0;
    for (const sub of this.subs.get(conn)?.values() ?? []) n += sub.members.length;
    return n;
  }

  private holds(conn: Connection, conversationId: string, sub: Subscription): boolean {
    return this.subs.get(conn)?.get(conversationId) === sub && this.registry.has(conn);
  }

  private drop(conn: Connection, conversationId: string, sub: Subscription): void {
    const subs = this.subs.get(conn);
    if (subs?.get(conversationId) === sub) subs.delete(conversationId);
    this.unindex(conn, conversationId, sub.members);
  }

  // ---- the watcher index ----

  /** Adds the subscription to the index; returns the members nobody here watched before. */
  private index(conn: Connection, conversationId: string, members: readonly string[]): string[] {
    const fresh: string[] = [];
    for (const user of members) {
      let conns = this.watching.get(user);
      if (!conns) {
        this.watching.set(user, (conns = new Map()));
        fresh.push(user);
      }
      let convs = conns.get(conn);
      if (!convs) conns.set(conn, (convs = new Set()));
      convs.add(conversationId);
    }
    return fresh;
  }

  private unindex(conn: Connection, conversationId: string, members: readonly string[]): void {
    const gone: string[] = [];
    for (const user of members) {
      const conns = this.watching.get(user);
      const convs = conns?.get(conn);
      if (!conns || !convs) continue;
      convs.delete(conversationId);
      if (convs.size === 0) conns.delete(conn);
      if (conns.size === 0) {
        this.watching.delete(user);
        this.known.delete(user);
        gone.push(user);
      }
    }
    if (gone.length > 0) this.run('presence.unwatch', () => this.store.unwatch(this.node, gone));
  }

  /** Keeps the newer of what we knew and `state`; true if `state` was newer. */
  private learn(user: string, state: PresenceState): boolean {
    if (!this.watching.has(user)) return false;
    const before = this.known.get(user);
    if (before && before.version >= state.version) return false;
    this.known.set(user, state);
    return true;
  }

  // ---- changes ----

  /** Sends each change to the nodes watching its user (one publish per node, all in one round trip). */
  private async announce(changes: PresenceChange[]): Promise<void> {
    if (changes.length === 0) return;
    this.recordOnStream(changes);
    const batches = new Map<string, EphemeralBatch>();
    for (const c of changes) {
      for (const node of c.watchers) {
        let batch = batches.get(node);
        if (!batch) batches.set(node, (batch = { kind: 'ephemeral', presence: [] }));
        batch.presence!.push({ u: c.userId, on: c.online, v: c.version });
      }
    }
    await this.channel.publishEphemeral(batches);
  }

  /**
   * Each flip is returned by the store exactly once cluster-wide, so the node that got it writes the
   * online/offline record of the event stream (webhooks, stream consumers). Off the fan-out's path: a
   * slow or failing bus delays or loses only these records (logged), never the presence frames.
   */
  private recordOnStream(changes: PresenceChange[]): void {
    for (const c of changes) {
      this.events
        .presenceChanged(c.userId, c.online ? 'online' : 'offline')
        .catch((err: Error) =>
          this.streamFailures.note('stream', `presence record for ${c.userId} not written: ${err.message}`),
        );
    }
  }

  private onEphemeral(batch: EphemeralBatch): void {
    if (batch.typing) this.typing.deliver(batch.typing);
    if (batch.presence) for (const item of batch.presence) this.apply(item);
  }

  private apply(item: PresenceItem): void {
    if (!this.learn(item.u, { online: item.on, version: item.v })) return;
    const status = item.on ? 'online' : 'offline';
    for (const [conn, convs] of this.watching.get(item.u) ?? []) {
      const subs = this.subs.get(conn);
      for (const conversationId of convs) {
        if (!subs?.get(conversationId)?.ready) continue;
        conn.sendRaw(
          JSON.stringify({
            type: 'presence',
            payload: { conversation_id: conversationId, user_id: item.u, status },
          }),
        );
      }
    }
  }

  // ---- timers ----

  /**
   * Heartbeat: this node's users are still here, and it still watches what its subscribers see.
   * Re-reading the watched users' state while refreshing the watches heals a change this node
   * missed (a lost publish, a Redis restart that dropped the watchers): it is sent now, late but once.
   */
  private async refresh(): Promise<void> {
    const [changes, states] = await Promise.all([
      this.store.connected(this.node, [...this.registry.users()]),
      this.store.watch(this.node, [...this.watching.keys()]),
    ]);
    for (const [user, state] of states) this.apply({ u: user, on: state.online, v: state.version });
    await this.announce(changes);
  }

  private async sweep(): Promise<void> {
    for (;;) {
      const changes = await this.store.sweep(SWEEP_LIMIT);
      await this.announce(changes);
      if (changes.length < SWEEP_LIMIT) return;
    }
  }

  private get node(): string {
    return this.config.nodeId;
  }

  private runOnce(where: string, work: () => Promise<void>): void {
    if (this.busy.has(where)) return;
    this.busy.add(where);
    this.run(where, () => work().finally(() => this.busy.delete(where)));
  }

  /** Fire and forget inside the boundary: a store outage costs a log line, never the process. */
  private run(where: string, work: () => Promise<void>): void {
    void work().catch((err: unknown) => this.logger.warn(`${where} failed: ${(err as Error)?.message}`));
  }
}
