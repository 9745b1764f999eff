import { Emitter } from './emitter.js';
import { RelayError } from './errors.js';
import type { ClientFrame, PresencePayload } from './protocol.generated.js';

/** One member went online or offline. `online` is the set after the change. */
export interface PresenceChange {
  conversationId: string;
  userId: string;
  status: 'online' | 'offline';
}

export interface PresenceEvents {
  /** One member's status changed (also for differences a new snapshot after a reconnect shows). */
  change: PresenceChange;
  /** A snapshot arrived (first one, and after every reconnect): `online` is up to date again. */
  snapshot: ReadonlySet<string>;
  /** The server refused the subscription (`forbidden`, `not_found`, `too_large`, ...); it is over. */
  error: RelayError;
}

interface Wire {
  transmit(frame: ClientFrame): boolean;
  readonly welcomed: boolean;
}

/** How long to wait before asking again after `unavailable`. */
const RETRY_MS = 1_000;

/**
 * The live set of a conversation's online members (v1.1 presence, ephemeral). Kept by the client
 * across reconnects: it subscribes again after every welcome and turns the new snapshot into the
 * changes missed meanwhile. Between a disconnect and the next snapshot the set is the last known.
 */
export class PresenceSubscription extends Emitter<PresenceEvents> {
  private members = new Set<string>();
  private snapshots = 0;
  private active = true;
  private readonly firstSnapshot: Promise<void>;
  private settleFirst!: (err?: RelayError) => void;

  constructor(
    readonly conversationId: string,
    private readonly onUnsubscribe: (sub: PresenceSubscription) => void,
  ) {
    super();
    this.firstSnapshot = new Promise<void>((resolve, reject) => {
      this.settleFirst = (err) => (err ? reject(err) : resolve());
    });
    this.firstSnapshot.catch(() => undefined); // rejections are reported through `error` too
  }

  /** The members online (live: read it again after events). */
  get online(): ReadonlySet<string> {
    return this.members;
  }

  /** Whether a snapshot arrived (the set is meaningful). */
  get ready(): boolean {
    return this.snapshots > 0;
  }

  get subscribed(): boolean {
    return this.active;
  }

  /** Resolves at the first snapshot; rejects if the server refuses the subscription. */
  whenReady(): Promise<void> {
    return this.firstSnapshot;
  }

  unsubscribe(): void {
    if (!this.active) return;
    this.active = false;
    this.onUnsubscribe(this);
    this.settleFirst(new RelayError('closed', 'unsubscribed before the first snapshot'));
  }

  /** @internal */
  snapshot(online: string[]): void {
    const next = new Set(online);
    const before = this.members;
    this.members = next;
    if (this.snapshots++ > 0) {
      for (const u of before) if (!next.has(u)) this.changed(u, 'offline');
      for (const u of next) if (!before.has(u)) this.changed(u, 'online');
    }
    this.emit('snapshot', next);
    this.settleFirst();
  }

  /** @internal */
  change(userId: string, status: 'online' | 'offline'): void {
    if (!this.ready) return; // the snapshot that follows covers it
    if (status === 'online' ? this.members.has(userId) : !this.members.has(userId)) return;
    if (status === 'online') this.members.add(userId);
    else this.members.delete(userId);
    this.changed(userId, status);
  }

  /** @internal */
  refused(err: RelayError): void {
    this.active = false;
    this.emit('error', err);
    this.settleFirst(err);
  }

  private changed(userId: string, status: 'online' | 'offline'): void {
    this.emit('change', { conversationId: this.conversationId, userId, status });
  }
}

/**
 * The client's presence subscriptions: sends `presence.subscribe` (again after every welcome),
 * routes `presence` frames and the errors that answer a subscribe (by its msg_id) to them.
 */
export class PresenceSubscriptions {
  private readonly subs = new Map<string, PresenceSubscription>();
  /** msg_id of the last subscribe sent -> conversation (one per subscription). */
  private readonly refs = new Map<string, string>();
  private counter = 0;
  private readonly retries = new Set<ReturnType<typeof setTimeout>>();

  constructor(
    private readonly wire: Wire,
    private readonly report: (err: RelayError) => void,
  ) {}

  subscribe(conversationId: string): PresenceSubscription {
    const existing = this.subs.get(conversationId);
    if (existing) return existing;
    const sub = new PresenceSubscription(conversationId, (s) => this.dropped(s));
    this.subs.set(conversationId, sub);
    if (this.wire.welcomed) this.request(conversationId);
    return sub;
  }

  /** A new connection was welcomed: every subscription asks for a fresh snapshot. */
  welcomed(): void {
    this.refs.clear();
    for (const conversationId of this.subs.keys()) this.request(conversationId);
  }

  received(p: PresencePayload): void {
    const sub = this.subs.get(p.conversation_id);
    if (!sub) return;
    if ('online' in p) sub.snapshot(p.online);
    else sub.change(p.user_id, p.status);
  }

  /** An error frame: true if it answered one of our subscribes. */
  refused(code: string, message: string, msgId: string | undefined): boolean {
    const conversationId = msgId === undefined ? undefined : this.refs.get(msgId);
    if (conversationId === undefined) return false;
    this.refs.delete(msgId!);
    const sub = this.subs.get(conversationId);
    if (!sub) return true;
    if (code === 'unavailable') {
      const t = setTimeout(() => {
        this.retries.delete(t);
        if (this.subs.get(conversationId) === sub && this.wire.welcomed) this.request(conversationId);
      }, RETRY_MS);
      this.retries.add(t);
      this.report(new RelayError(code, message, msgId));
      return true;
    }
    this.subs.delete(conversationId);
    sub.refused(new RelayError(code, message, msgId));
    return true;
  }

  close(): void {
    for (const t of this.retries) clearTimeout(t);
    this.retries.clear();
  }

  private request(conversationId: string): void {
    for (const [ref, c] of this.refs) if (c === conversationId) this.refs.delete(ref);
    const msgId = `presence-${++this.counter}`;
    this.refs.set(msgId, conversationId);
    this.wire.transmit({
      type: 'presence.subscribe',
      msg_id: msgId,
      payload: { conversation_id: conversationId },
    });
  }

  private dropped(sub: PresenceSubscription): void {
    if (this.subs.get(sub.conversationId) !== sub) return;
    this.subs.delete(sub.conversationId);
    for (const [ref, c] of this.refs) if (c === sub.conversationId) this.refs.delete(ref);
    if (this.wire.welcomed) {
      this.wire.transmit({ type: 'presence.unsubscribe', payload: { conversation_id: sub.conversationId } });
    }
  }
}
