import { Logger } from '@nestjs/common';
import { WebSocket } from 'ws';
import { CLOSE, errorFrame, ErrorCode } from '../protocol/frames';
import { encodeCursor } from '../outbox/cursor';
import { StoredDelivery } from '../outbox/outbox.store';
import { deliveryFrame, OutboxEntry } from '../protocol/outbox-entry';
import { DeliveredTracker } from './delivered-tracker';
import { AppConfig } from '../config/app-config';
import { IngressLane, RefusalRange } from './ingress-lane';
import { refill, TokenBucket } from './token-bucket';
import { DeadlineHeap } from './deadline-heap';
import { fromCompactTime, toCompactTime } from './compact-time';
import { smallInt } from '../common/small-int';
import type { ConnectionSocket } from './connection-socket';

/** What a connection needs from the outbox: the consumer defines the small interface it uses. */
export interface DeliverySource {
  readAfter(userId: string, afterSeq: number, limit: number): Promise<StoredDelivery[]>;
}

/** Per-connection budgets: the gateway passes its config section (documented there). */
export type ConnectionLimits = Pick<
  AppConfig['gateway'],
  'sendRatePerSec' | 'sendBurst' | 'frameRatePerSec' | 'frameBurst' | 'floodCloseAfter' | 'maxBufferedBytes'
>;

/** What a connection reports; the gateway wires it to its metrics. */
export interface ConnectionObserver {
  frameRejected(code: ErrorCode): void;
  closedByServer(code: number): void;
}

const NO_OBSERVER: ConnectionObserver = { frameRejected: () => undefined, closedByServer: () => undefined };

/** Answer to an inbound frame's budget check. */
export type FrameBudget = 'ok' | 'limited' | 'flooding';

const FILL_PAGE = 500;
/** A fill writes until this many bytes are unsent, then waits for the socket (never near the hard cap). */
const SOFT_BUFFER = 1 << 20;

export type ConnectionState = 'handshake' | 'greeting' | 'open' | 'closed';

/**
 * A connection's state that an idle one never needs, in one object created by the first use: five
 * fields of the connection would cost every idle connection 40 B, this costs it 8.
 */
interface ConnectionExtras {
  /** Created by the first `send`: see `ingress`. */
  lane: IngressLane | null;
  /** v1.1: which conversation seqs the deliveries written so far cover (for delivered receipts); see `delivered`. */
  tracker: DeliveredTracker | null;
  /** Created by the first `send`, full, as if it had been there from the start. */
  sendTokens: TokenBucket | null;
  /** Frames received while hello is being answered; handled right after welcome. */
  early: string[] | null;
  /** Live pushes waiting for a fill (see the class invariants). */
  pending: { seq: number; frame: string; entry?: OutboxEntry }[] | null;
}

export function messageFrame(cursor: string, envelopeJson: string): string {
  return `{"type":"message","msg_id":"${cursor}","payload":${envelopeJson}}`;
}

/**
 * One WebSocket (or long-polling session, see ConnectionSocket) of one user, and the ordering and bounds of what is written to it.
 *
 * Invariants:
 * - `lastSeq` is the highest delivery seq written to this socket; deliveries go out in strictly
 *   increasing seq order and each at most once.
 * - Outbox reads (fills) and live pushes never interleave: while a fill runs, pushes wait in `pending`.
 * - A live push is written directly only when it is exactly lastSeq+1. A push further ahead means a
 *   gap (a dropped push, a resync, a late subscription): the connection fills from the outbox, which
 *   holds every seq below a visible one (OutboxStore contract), then drains `pending`.
 * - Every write goes through `sendRaw`: with more than `maxBufferedBytes` unsent, the socket is closed
 *   1013 instead (the client resumes from its cursor), so no client can make us queue without bound.
 * - Once the token's `exp` passes, the socket is closed 4001 (`expiries`); the deadline goes on close.
 * - An idle connection keeps little: no timer of its own (hello and expiry deadlines share one timer
 *   each, see DeadlineHeap), no bucket or lane before its first send, times as small integers.
 * - Lifecycle: handshake -> (hello) greeting -> (welcome sent, `start`) open -> closed. While greeting,
 *   inbound frames are held (`holdEarly`, at most `sendBurst`) so nothing overtakes `welcome`.
 */
export class Connection {
  private static readonly logger = new Logger('Connection');
  /** Every connection's hello deadline, on one timer. */
  private static readonly hellos = new DeadlineHeap<Connection>((err, conn) =>
    Connection.logger.error(`hello timeout for user ${conn.userId} failed: ${(err as Error).message}`),
  );
  /** Every connection's token expiry, on one timer. */
  private static readonly expiries = new DeadlineHeap<Connection>((err, conn) =>
    Connection.logger.error(`expiry for user ${conn.userId} failed: ${(err as Error).message}`),
  );
  /** The token's `exp` passed: close 4001 (one function for every connection). */
  private static readonly expire = (conn: Connection): void => {
    if (conn.phase !== 'closed') conn.close(CLOSE.unauthorized, 'token expired');
  };

  /** What an idle connection never needs, created by the first use (see ConnectionExtras). */
  private more: ConnectionExtras | null = null;
  /** Compact times (see compact-time.ts): a Date.now() in a field costs a 16-byte heap number more. */
  private readonly born = toCompactTime(Date.now());
  private phase: ConnectionState = 'handshake';
  private lastSeq = 0;
  private epoch = '';
  private missedPongs = 0;
  private lastPong = this.born;
  /** The frame budget, a token bucket kept in two fields (see `takeFrameToken`); it starts full. */
  private frameTokens: number;
  private frameAt = this.born;
  /** Consecutive inbound frames over the frame budget. */
  private overBudget = 0;
  /**
   * Pushes wait (in `pending`) until `live`: 'waiting' from construction until the first fill starts,
   * 'filling' while any fill runs, 'live' between fills.
   */
  private flow: 'waiting' | 'filling' | 'live' = 'waiting';
  /** The server started the closing handshake (or terminated): labels the close in metrics. */
  private serverClosed = false;

  constructor(
    readonly id: string,
    readonly userId: string,
    readonly expiresAt: number | null,
    private readonly ws: ConnectionSocket,
    private readonly source: DeliverySource,
    private readonly limits: ConnectionLimits,
    private readonly observer: ConnectionObserver = NO_OBSERVER,
    /** The client's address, as admission counted it (released with it on close). */
    readonly ip: string = '',
  ) {
    this.frameTokens = limits.frameBurst;
    if (expiresAt !== null) Connection.expiries.add(this, expiresAt, Connection.expire);
  }

  /** When the connection was accepted (epoch ms). */
  get connectedAt(): number {
    return fromCompactTime(this.born);
  }

  get state(): ConnectionState {
    return this.phase;
  }

  /** When the client last answered a ping (the session entry's `lastPing`). */
  get lastPing(): number {
    return fromCompactTime(this.lastPong);
  }

  /** Publish order, in-flight publishes and refusals after a failure (IngressService drives it). */
  get ingress(): IngressLane {
    const more = this.extras();
    return (more.lane ??= new IngressLane());
  }

  /** Created by the first delivery it must track (an idle connection never needs one). */
  get delivered(): DeliveredTracker {
    const more = this.extras();
    return (more.tracker ??= new DeliveredTracker());
  }

  /** The ingress lane's open refusal ranges (read-only). */
  get refusals(): readonly RefusalRange[] {
    return this.more?.lane?.refusals ?? [];
  }

  /** Whether the server, not the client, closed first (meaningful once the socket is closing). */
  get closedByServer(): boolean {
    return this.serverClosed;
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Writes one frame, unless the client already has more than maxBufferedBytes unread (then 1013). */
  sendRaw(text: string): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.ws.bufferedAmount > this.limits.maxBufferedBytes) {
      // A client that does not read would make us buffer without bound; it resumes from its cursor.
      this.close(CLOSE.slowConsumer, 'slow consumer');
      return;
    }
    this.ws.send(text);
  }

  sendError(code: ErrorCode, message: string, ref?: string): void {
    this.observer.frameRejected(code);
    this.sendRaw(errorFrame(code, message, ref));
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.observer.closedByServer(code);
      this.serverClosed = true;
      this.ws.close(code, reason);
    }
  }

  terminate(): void {
    if (this.ws.readyState !== WebSocket.CLOSED) {
      this.observer.closedByServer(1006);
      this.serverClosed ||= this.ws.readyState !== WebSocket.CLOSING;
    }
    this.ws.terminate();
  }

  /**
   * Holds this socket's writes until `uncork`, so frames written in one synchronous run leave in one
   * syscall. ws exposes no API for it; its underlying net.Socket does.
   */
  cork(): void {
    (this.ws as unknown as { _socket?: { cork(): void } })._socket?.cork();
  }

  uncork(): void {
    (this.ws as unknown as { _socket?: { uncork(): void } })._socket?.uncork();
  }

  /**
   * One heartbeat tick: a socket that left the last two pings unanswered is terminated (false);
   * otherwise it is pinged and owes one more pong.
   */
  heartbeat(): boolean {
    if (this.missedPongs >= 2) {
      this.terminate();
      return false;
    }
    this.missedPongs++;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
    return true;
  }

  onPong(now = Date.now()): void {
    this.missedPongs = 0;
    this.lastPong = toCompactTime(now);
  }

  /**
   * Before hello: `onTimeout(this)` runs unless hello arrives within `ms`. One function for every
   * connection (no closure per connection); a throw is logged.
   */
  expectHello(ms: number, onTimeout: (conn: Connection) => void): void {
    Connection.hellos.add(this, Date.now() + ms, onTimeout);
  }

  /** hello arrived: the hello deadline goes and frames are held until `start` (after welcome). */
  beginGreeting(): void {
    Connection.hellos.remove(this);
    this.phase = 'greeting';
  }

  /** Holds a frame received while greeting; false when `sendBurst` frames are already held. */
  holdEarly(text: string): boolean {
    const more = this.extras();
    const held = (more.early ??= []);
    if (held.length >= this.limits.sendBurst) return false;
    held.push(text);
    return true;
  }

  /** The frames held while greeting, in arrival order; none are held after this. */
  takeEarly(): string[] {
    const held = this.more?.early ?? [];
    if (this.more) this.more.early = null;
    return held;
  }

  /** Token bucket for `send` frames. */
  takeSendToken(now = Date.now()): boolean {
    const more = this.extras();
    return (more.sendTokens ??= new TokenBucket(this.limits.sendRatePerSec, this.limits.sendBurst, now)).take(
      now,
    );
  }

  /**
   * The budget every inbound frame passes first. 'limited': answer `rate_limited` and drop the frame;
   * 'flooding': close 4029. The flood count goes up by one per frame over budget and down by one per
   * frame within it, so a client sending at several times its rate is closed even though the refill
   * lets one frame through now and then, while one that only grazes its budget is just rate-limited.
   */
  takeFrameToken(now = Date.now()): FrameBudget {
    const { frameRatePerSec, frameBurst } = this.limits;
    const tokens = refill(this.frameTokens, fromCompactTime(this.frameAt), now, frameRatePerSec, frameBurst);
    this.frameAt = toCompactTime(now);
    this.frameTokens = smallInt(tokens >= 1 ? tokens - 1 : tokens);
    if (tokens >= 1) {
      if (this.overBudget > 0) this.overBudget--;
      return 'ok';
    }
    return ++this.overBudget >= this.limits.floodCloseAfter ? 'flooding' : 'limited';
  }

  /** The token has expired (the timer closes the socket; this guards frames already read). */
  expired(now = Date.now()): boolean {
    return this.expiresAt !== null && now >= this.expiresAt;
  }

  /** Starts delivery after `welcome`: retained deliveries after `afterSeq`, then live ones. */
  start(epoch: string, afterSeq: number): void {
    this.epoch = epoch;
    this.lastSeq = afterSeq;
    this.phase = 'open';
    void this.fill();
  }

  /** A live delivery for this connection's user. */
  push(seq: number, frame: string, entry?: OutboxEntry): void {
    if (this.phase === 'closed') return;
    if (this.flow !== 'live') {
      (this.extras().pending ??= []).push({ seq, frame, entry });
      return;
    }
    if (seq <= this.lastSeq) return;
    if (seq !== this.lastSeq + 1) {
      (this.extras().pending ??= []).push({ seq, frame, entry });
      void this.fill();
      return;
    }
    this.write(seq, frame, entry);
  }

  /** The channel may have lost pushes: catch up from the outbox. */
  resync(): Promise<void> {
    return this.phase === 'open' ? this.fill() : Promise.resolve();
  }

  markClosed(): void {
    this.phase = 'closed';
    if (this.more) this.more.pending = null;
    this.more?.lane?.clear();
    Connection.hellos.remove(this);
    Connection.expiries.remove(this);
  }

  private write(seq: number, frame: string, entry?: OutboxEntry): void {
    this.sendRaw(frame);
    this.lastSeq = seq;
    if (entry) this.delivered.wrote(seq, entry, this.userId);
  }

  private async fill(): Promise<void> {
    if (this.flow === 'filling') return;
    this.flow = 'filling';
    try {
      for (;;) {
        const rows = await this.source.readAfter(this.userId, this.lastSeq, FILL_PAGE);
        if (this.phase === 'closed') return;
        for (let i = 0; i < rows.length;) {
          // Write corked up to the soft bound, then let the socket drain: a page of large messages
          // must not reach the hard cap of a client that is reading.
          this.cork();
          for (; i < rows.length && this.ws.bufferedAmount <= this.softBuffer(); i++) {
            const row = rows[i];
            if (row.seq <= this.lastSeq) continue;
            this.write(row.seq, deliveryFrame(encodeCursor(this.epoch, row.seq), row.envelope), row.envelope);
          }
          this.uncork();
          await this.waitForSocket();
          if (!this.isOpen || (this.phase as ConnectionState) === 'closed') return;
        }
        if (rows.length === FILL_PAGE) continue;
        if (this.drainPending()) return;
        // A gap inside pending: the outbox already holds the missing seqs, read again.
      }
    } catch (err) {
      Connection.logger.warn(`fill for user ${this.userId} failed: ${(err as Error).message}`);
      this.close(CLOSE.internal, 'outbox unavailable'); // the client resumes from its cursor
    } finally {
      this.flow = 'live';
    }
  }

  /** Writes queued pushes in seq order; false when it met a gap (the rest is re-read from the outbox). */
  private drainPending(): boolean {
    const queued = this.more?.pending?.sort((a, b) => a.seq - b.seq) ?? [];
    if (this.more) this.more.pending = null;
    for (const p of queued) {
      if (p.seq <= this.lastSeq) continue;
      if (p.seq !== this.lastSeq + 1) return false;
      this.write(p.seq, p.frame, p.entry);
    }
    return true;
  }

  private extras(): ConnectionExtras {
    return (this.more ??= { lane: null, tracker: null, sendTokens: null, early: null, pending: null });
  }

  private softBuffer(): number {
    return Math.min(SOFT_BUFFER, this.limits.maxBufferedBytes >> 1);
  }

  private async waitForSocket(): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (this.ws.bufferedAmount > this.softBuffer() && this.ws.readyState === WebSocket.OPEN) {
      if (Date.now() > deadline) {
        this.close(CLOSE.slowConsumer, 'slow consumer');
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
