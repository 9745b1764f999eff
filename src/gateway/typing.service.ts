import { Injectable, Logger } from '@nestjs/common';
import { Config } from '../config/config.module';
import { ClientFrame } from '../protocol/frames';
import { MembershipCache } from '../presence/membership.cache';
import { PresenceStore } from '../presence/presence.store';
import { EphemeralBatch, NodeChannel } from '../session/node-channel';
import { Connection } from './connection';
import { ConnectionRegistry } from './connection.registry';
import { TokenBucket } from './token-bucket';

type TypingFrame = Extract<ClientFrame, { type: 'typing' }>;
type TypingItem = NonNullable<EphemeralBatch['typing']>[number];

/** Typing frames a connection may send per second (and at once); `rate_limited` beyond. */
const TYPING_RATE_PER_SEC = 10;
const TYPING_BURST = 20;

/** What this node relayed for one (typer, conversation). */
interface TypingEntry {
  /** When this node last relayed (or saw another node hold) the user's `start` slot. */
  relayedAt: number;
  /** Until when receivers show the user typing (0: stopped); a `stop` is owed before then. */
  until: number;
}

/**
 * v1.1 typing indicators: ephemeral, best effort, at most once (docs/protocol.md). A `typing` frame
 * is checked against the membership cache (no directory round trip per keystroke), throttled to one
 * relayed `start` per user per conversation per TYPING_INTERVAL_MS (here first, then cluster-wide
 * by the store's slot), routed to the nodes holding the other members' connections and sent there
 * over the node channels. Never stored, never on the bus.
 *
 * Invariants: the typer's own user is never a recipient; a `stop` is relayed only for a `start`
 * this node relayed and that has not expired; when the user's last connection on this node closes,
 * every such `start` gets its `stop`. All state is per node and owned by the event loop.
 */
@Injectable()
export class TypingService {
  private readonly logger = new Logger(TypingService.name);
  private readonly buckets = new WeakMap<Connection, TokenBucket>();
  /** user -> conversation -> entry. Bounded: entries go once stopped and expired (pruned on access). */
  private readonly typers = new Map<string, Map<string, TypingEntry>>();

  constructor(
    private readonly config: Config,
    private readonly membership: MembershipCache,
    private readonly store: PresenceStore,
    private readonly channel: NodeChannel,
    private readonly registry: ConnectionRegistry,
  ) {}

  /** A client's `typing` frame. */
  handle(conn: Connection, frame: TypingFrame): void {
    const now = Date.now();
    let bucket = this.buckets.get(conn);
    if (!bucket) this.buckets.set(conn, (bucket = new TokenBucket(TYPING_RATE_PER_SEC, TYPING_BURST)));
    if (!bucket.take(now)) return conn.sendError('rate_limited', 'too many typing frames', frame.msg_id);
    const { conversation_id: conversationId, state } = frame.payload;
    const entry = this.typers.get(conn.userId)?.get(conversationId);
    // Within the interval of a start we relayed, the membership was checked and nothing is owed.
    if (state === 'start' && entry && now - entry.relayedAt < this.config.live.typingIntervalMs) return;
    void this.relay(conn.userId, conversationId, state, conn, frame.msg_id).catch((err: Error) => {
      this.logger.warn(`typing relay failed: ${err.message}`);
      conn.sendError('unavailable', 'typing could not be relayed, try later', frame.msg_id);
    });
  }

  /** The user's last connection on this node closed: stop every start it still has showing. */
  lastConnectionClosed(userId: string): void {
    const convs = this.typers.get(userId);
    if (!convs) return;
    this.typers.delete(userId); // nothing is kept for users without connections here
    const now = Date.now();
    for (const [conversationId, entry] of convs) {
      if (entry.until <= now) continue;
      void this.relay(userId, conversationId, 'stop', null, undefined, true).catch((err: Error) =>
        this.logger.warn(`typing stop on close failed: ${err.message}`),
      );
    }
  }

  /** Typing events other nodes (or this one) routed here: one frame per local connection of each recipient. */
  deliver(items: TypingItem[]): void {
    for (const item of items) {
      const frame = JSON.stringify({
        type: 'typing',
        payload: { conversation_id: item.c, user_id: item.u, state: item.s, expires_in_ms: item.x },
      });
      for (const user of item.t) {
        if (user === item.u) continue; // never the typer's own devices
        for (const conn of this.registry.forUser(user) ?? []) if (conn.state === 'open') conn.sendRaw(frame);
      }
    }
  }

  private async relay(
    userId: string,
    conversationId: string,
    state: 'start' | 'stop',
    conn: Connection | null,
    ref?: string,
    /** A stop owed on close: the entry is already gone. */
    owed = false,
  ): Promise<void> {
    const { typingIntervalMs, typingExpiresMs } = this.config.live;
    const membership = await this.membership.of(conversationId);
    if (!membership.members) {
      return conn?.sendError('not_found', `conversation ${conversationId} does not exist`, ref);
    }
    if (!membership.has(userId)) {
      return conn?.sendError('forbidden', `you are not a member of conversation ${conversationId}`, ref);
    }
    if (conn && !this.registry.forUser(userId)) return; // closed meanwhile: nothing may be left behind
    const now = Date.now();
    const convs = owed ? new Map<string, TypingEntry>() : this.entriesOf(userId, now);
    const entry = convs.get(conversationId);
    if (state === 'start') {
      if (entry && now - entry.relayedAt < typingIntervalMs) return; // a concurrent frame got here first
      // Showing from now on, so a stop right behind this start (still routing) is relayed after it.
      convs.set(conversationId, { relayedAt: now, until: now + typingExpiresMs });
    } else if (!owed) {
      if (!(entry && entry.until > now)) return; // nothing showing: nothing to stop
      convs.delete(conversationId); // and the next start is relayed at once (the store frees the slot too)
    }
    const recipients = membership.members.filter((m) => m !== userId);
    const routes = await this.store.typingRoute(userId, conversationId, state, recipients, typingIntervalMs);
    if (state === 'start') {
      // The store's slot runs from its claim, a little after `now`: time ours from here, so the next
      // start this node lets through finds the slot free rather than throttled.
      const e = convs.get(conversationId);
      if (e) e.relayedAt = Date.now();
    }
    if (!routes) return; // another node relayed this user's start within the interval
    const expires = state === 'start' ? typingExpiresMs : 0;
    const batches = new Map<string, EphemeralBatch>();
    for (const [node, users] of routes) {
      batches.set(node, {
        kind: 'ephemeral',
        typing: [{ c: conversationId, u: userId, s: state, x: expires, t: users }],
      });
    }
    await this.channel.publishEphemeral(batches);
  }

  /** The user's entries, with those that expired and were stopped pruned. */
  private entriesOf(userId: string, now: number): Map<string, TypingEntry> {
    let convs = this.typers.get(userId);
    if (!convs) {
      this.typers.set(userId, (convs = new Map()));
      return convs;
    }
    const interval = this.config.live.typingIntervalMs;
    for (const [c, e] of convs) if (e.until <= now && now - e.relayedAt >= interval) convs.delete(c);
    return convs;
  }
}
