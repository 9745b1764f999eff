import { Logger } from '@nestjs/common';
import { WebSocket } from 'ws';
import { errorFrame, ErrorCode } from '../protocol/frames';
import { encodeCursor } from '../outbox/cursor';
import { StoredDelivery } from '../outbox/outbox.store';

/** What a connection needs from the outbox: the consumer defines the small interface it uses. */
export interface DeliverySource {
  readAfter(userId: string, afterSeq: number, limit: number): Promise<StoredDelivery[]>;
}

const FILL_PAGE = 500;
/** Above this many unsent bytes the fill waits for the socket; live pushes beyond the hard cap drop the client. */
const SOFT_BUFFER = 1 << 20;
const HARD_BUFFER = 16 << 20;

export function messageFrame(cursor: string, envelopeJson: string): string {
  return `{"type":"message","msg_id":"${cursor}","payload":${envelopeJson}}`;
}

/**
 * One WebSocket of one user, and the ordering of what is written to it.
 *
 * Invariants:
 * - `lastSeq` is the highest delivery seq written to this socket; deliveries go out in strictly
 *   increasing seq order and each at most once.
 * - Outbox reads (fills) and live pushes never interleave: while a fill runs, pushes wait in `pending`.
 * - A live push is written directly only when it is exactly lastSeq+1. A push further ahead means a
 *   gap (a dropped push, a resync, a late subscription): the connection fills from the outbox, which
 *   holds every seq below a visible one (OutboxStore contract), then drains `pending`.
 */
export class Connection {
  private static readonly logger = new Logger('Connection');

  state: 'handshake' | 'greeting' | 'open' | 'closed' = 'handshake';
  /** Frames received while hello is being answered; handled right after welcome. */
  early: string[] = [];
  lastSeq = 0;
  epoch = '';
  missedPongs = 0;
  lastPing = Date.now();
  readonly connectedAt = Date.now();
  handshakeTimer: NodeJS.Timeout | undefined;
  /** Chains this connection's publishes so they are issued in frame order (see IngressService). */
  ingressTail: Promise<void> = Promise.resolve();
  publishesInFlight = 0;
  publishFailed = false;
  private tokens: number;
  private tokensAt = Date.now();
  /** True from construction until the first fill ends, and while any fill runs: pushes wait. */
  private filling = true;
  private fillRunning = false;
  private pending: { seq: number; frame: string }[] = [];

  constructor(
    readonly id: string,
    readonly userId: string,
    readonly expiresAt: number | null,
    private readonly ws: WebSocket,
    private readonly source: DeliverySource,
    private readonly rate: { perSec: number; burst: number },
  ) {
    this.tokens = rate.burst;
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  sendRaw(text: string): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  sendError(code: ErrorCode, message: string, ref?: string): void {
    this.sendRaw(errorFrame(code, message, ref));
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(code, reason);
    }
  }

  terminate(): void {
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

  ping(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
  }

  onClosed(listener: () => void): void {
    this.ws.once('close', listener);
  }

  /** Token bucket for `send` frames. */
  takeSendToken(now = Date.now()): boolean {
    this.tokens = Math.min(this.rate.burst, this.tokens + ((now - this.tokensAt) / 1000) * this.rate.perSec);
    this.tokensAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Starts delivery after `welcome`: retained deliveries after `afterSeq`, then live ones. */
  start(epoch: string, afterSeq: number): void {
    this.epoch = epoch;
    this.lastSeq = afterSeq;
    this.state = 'open';
    void this.fill();
  }

  /** A live delivery for this connection's user. */
  push(seq: number, frame: string): void {
    if (this.state === 'closed') return;
    if (this.filling) {
      this.pending.push({ seq, frame });
      return;
    }
    if (seq <= this.lastSeq) return;
    if (seq !== this.lastSeq + 1) {
      this.pending.push({ seq, frame });
      void this.fill();
      return;
    }
    if (this.ws.bufferedAmount > HARD_BUFFER) {
      // A client that cannot keep up would make us buffer without bound; it resumes from its cursor.
      this.close(1013, 'slow consumer');
      return;
    }
    this.write(seq, frame);
  }

  /** The channel may have lost pushes: catch up from the outbox. */
  resync(): Promise<void> {
    return this.state === 'open' ? this.fill() : Promise.resolve();
  }

  markClosed(): void {
    this.state = 'closed';
    this.pending = [];
    clearTimeout(this.handshakeTimer);
  }

  private write(seq: number, frame: string): void {
    this.sendRaw(frame);
    this.lastSeq = seq;
  }

  private async fill(): Promise<void> {
    if (this.fillRunning) return;
    this.filling = true;
    this.fillRunning = true;
    try {
      for (;;) {
        const rows = await this.source.readAfter(this.userId, this.lastSeq, FILL_PAGE);
        if (this.state === 'closed') return;
        this.cork();
        for (const row of rows) {
          if (row.seq <= this.lastSeq) continue;
          this.write(row.seq, messageFrame(encodeCursor(this.epoch, row.seq), JSON.stringify(row.envelope)));
        }
        this.uncork();
        await this.waitForSocket();
        if (rows.length === FILL_PAGE) continue;
        if (this.drainPending()) return;
        // A gap inside pending: the outbox already holds the missing seqs, read again.
      }
    } catch (err) {
      Connection.logger.warn(`fill for user ${this.userId} failed: ${(err as Error).message}`);
      this.close(1011, 'outbox unavailable'); // the client resumes from its cursor
    } finally {
      this.fillRunning = false;
      this.filling = false;
    }
  }

  /** Writes queued pushes in seq order; false when it met a gap (the rest is re-read from the outbox). */
  private drainPending(): boolean {
    const queued = this.pending.sort((a, b) => a.seq - b.seq);
    this.pending = [];
    for (const p of queued) {
      if (p.seq <= this.lastSeq) continue;
      if (p.seq !== this.lastSeq + 1) return false;
      this.write(p.seq, p.frame);
    }
    return true;
  }

  private async waitForSocket(): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (this.ws.bufferedAmount > SOFT_BUFFER && this.ws.readyState === WebSocket.OPEN) {
      if (Date.now() > deadline) {
        this.close(1013, 'slow consumer');
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
