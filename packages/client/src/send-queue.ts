import type { Ack, SendOptions } from './api.js';
import { Backoff } from './backoff.js';
import { RelayError, describe } from './errors.js';
import { newRef, utf8Length } from './ids.js';
import { CloseCode } from './protocol.js';
import type { AckPayload } from './protocol.js';

/**
 * The send queue: every send waiting for an ack, and the pacing that puts them on the wire.
 *
 * Invariants:
 * - `pending` iterates in send() order (Map iteration order is insertion order). A send leaves it
 *   once, through forget(): acked, refused for good, timed out, or rejected by close().
 * - `onSocketCount` counts the pending sends with `onSocket` set; pump() keeps it <= resendBurst.
 * - A send is written only when every earlier pending send is on the wire, and one waiting out a
 *   retry back-off (`retryTimer`) holds back every later one: the wire keeps the send() order.
 * - pump() never runs nested: a re-entrant call makes the running one loop again.
 */

type Timer = ReturnType<typeof setTimeout>;

/**
 * Retry delays after `rate_limited`: the server stored nothing and refills its token bucket over
 * time, so wait at least half the ceiling (an immediate retry would only be refused again).
 */
const RATE_LIMIT_BASE_MS = 200;
const RATE_LIMIT_CAP_MS = 5_000;

/** The settings the queue reads (the connect options, defaults applied). */
export interface SendLimits {
  maxQueue: number;
  maxFrameBytes: number;
  sendTimeoutMs: number;
  resendBurst: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  random: () => number;
}

/** The connection, as the send queue sees it. */
export interface SendWire {
  /** The server's welcome arrived on the current socket: sends may go out. */
  readonly welcomed: boolean;
  /** Writes a frame to the current socket; false when there is none or it is going away. */
  transmit(frame: string): boolean;
}

interface PendingSend {
  ref: string;
  /** Serialized once, so every retry carries exactly the same bytes (and later mutation of `body` cannot leak in). */
  frame: string;
  bytes: number;
  resolve: (ack: Ack) => void;
  reject: (err: RelayError) => void;
  deadline: Timer;
  /**
   * Set while waiting out a back-off after `unavailable` or `rate_limited`. Until it fires, neither
   * this send nor any later one is (re-)transmitted, so the wire keeps the send() order.
   */
  retryTimer?: Timer;
  /** Back-off after `unavailable` (the reconnect sequence). */
  retryBackoff?: Backoff;
  /** Back-off after `rate_limited` (RATE_LIMIT_BASE_MS doubling to RATE_LIMIT_CAP_MS, equal jitter). */
  throttleBackoff?: Backoff;
  /** Written to the current socket and not answered yet (counts against resendBurst; a 1009 culprit). */
  onSocket: boolean;
}

export class SendQueue {
  /** Sends waiting for an ack, in send() order. */
  private readonly pending = new Map<string, PendingSend>();
  /** How many pending sends are on the current socket awaiting an answer (`onSocket`). */
  private onSocketCount = 0;
  private pumping = false;
  private pumpAgain = false;
  private closed = false;

  constructor(
    private readonly limits: SendLimits,
    private readonly wire: SendWire,
  ) {}

  /** Sends waiting for an ack. */
  get size(): number {
    return this.pending.size;
  }

  /** RelayClient.send (documented there): validates, serializes once, and queues. */
  send(conversationId: string, body: unknown, options: SendOptions): Promise<Ack> {
    const ref = options.ref ?? newRef();
    const fail = (code: string, message: string) => Promise.reject<Ack>(new RelayError(code, message, ref));
    if (this.closed) return fail('closed', 'the client is closed');
    if (typeof conversationId !== 'string' || conversationId.length === 0) {
      return fail('invalid_argument', 'conversationId must be a non-empty string');
    }
    if (typeof ref !== 'string' || ref.length < 1 || ref.length > 64) {
      return fail('invalid_argument', 'ref must be a string of 1 to 64 characters');
    }
    if (this.pending.has(ref)) return fail('invalid_argument', `a send with ref "${ref}" is already pending`);
    if (this.pending.size >= this.limits.maxQueue) {
      return fail('queue_full', `${this.pending.size} sends are already waiting for an ack`);
    }
    let bodyJson: string | undefined;
    try {
      bodyJson = JSON.stringify(body);
    } catch (err) {
      return fail('invalid_argument', `body is not JSON-serializable: ${describe(err)}`);
    }
    if (bodyJson === undefined) return fail('invalid_argument', 'body is not JSON-serializable');
    const frame =
      `{"type":"send","msg_id":${JSON.stringify(ref)},` +
      `"payload":{"conversation_id":${JSON.stringify(conversationId)},"body":${bodyJson}}}`;
    const bytes = utf8Length(frame);
    if (bytes > this.limits.maxFrameBytes) {
      return fail('too_large', `the frame is ${bytes} bytes; the limit is ${this.limits.maxFrameBytes}`);
    }
    const timeoutMs = options.timeoutMs ?? this.limits.sendTimeoutMs;

    return new Promise<Ack>((resolve, reject) => {
      const send: PendingSend = {
        ref,
        frame,
        bytes,
        resolve,
        reject,
        onSocket: false,
        deadline: setTimeout(() => {
          const msg = `no ack within ${timeoutMs} ms; the message may still have been accepted (retry with the same ref)`;
          this.rejectSend(send, new RelayError('timeout', msg, ref));
        }, timeoutMs),
      };
      this.pending.set(ref, send);
      // Goes out now if open and nothing earlier is still waiting for its turn; otherwise after
      // those (and, when offline, after the next welcome).
      this.pump();
    });
  }

  /** The server's ack (`id` is the server message id): the send is durable. */
  acked(id: string, p: AckPayload): void {
    const send = this.pending.get(p.ref);
    // Unknown ref: a second ack for a retried send, or one that already timed out.
    if (send) this.resolveSend(send, { id, ts: p.ts, conversationId: p.conversation_id, ref: p.ref });
  }

  /** A server error. Returns false when it answers no pending send (the caller reports it). */
  refused(code: string, message: string, ref: string | undefined): boolean {
    const send = ref === undefined ? undefined : this.pending.get(ref);
    if (!send) return false;
    if (code === 'unavailable') {
      send.retryBackoff ??= this.newBackoff();
      this.retryLater(send, send.retryBackoff.next());
    } else if (code === 'rate_limited') {
      send.throttleBackoff ??= new Backoff({
        baseMs: RATE_LIMIT_BASE_MS,
        capMs: RATE_LIMIT_CAP_MS,
        random: this.limits.random,
        jitter: 'equal',
      });
      this.retryLater(send, send.throttleBackoff.next());
    } else {
      this.rejectSend(send, new RelayError(code, message, ref));
    }
    return true;
  }

  /**
   * A new session began. Every unacked send goes out again, in the original order and with the
   * original ref (the server answers an already-stored one with its original ack, so nothing is
   * duplicated), at most resendBurst at a time. A new connection has a fresh rate limit: no
   * back-off carries over.
   */
  resend(): void {
    this.takeAllOffSocket();
    for (const send of this.pending.values()) {
      clearTimeout(send.retryTimer);
      send.retryTimer = undefined;
    }
    this.pump();
  }

  /** The connection ended with `code`: nothing is on the wire any more. */
  lost(code: number): void {
    if (code === CloseCode.tooLarge) this.failLargestInFlight();
    this.takeAllOffSocket();
  }

  /** The client closed: no more sends, and every pending one rejects with `reason`'s code. */
  close(reason: RelayError): void {
    this.closed = true;
    for (const send of [...this.pending.values()]) {
      this.rejectSend(send, new RelayError(reason.code, reason.message, send.ref));
    }
  }

  /**
   * `unavailable` and `rate_limited` mean the server stored nothing for now: send the same frame
   * again after `delay`, until the send's deadline. Meanwhile the sends after it wait as well.
   */
  private retryLater(send: PendingSend, delay: number): void {
    this.takeOffSocket(send);
    clearTimeout(send.retryTimer);
    send.retryTimer = setTimeout(() => {
      send.retryTimer = undefined;
      this.pump(); // if we are offline now, the next welcome re-sends it
    }, delay);
  }

  /**
   * Puts pending sends on the wire in send() order: each one not on the socket yet, until
   * resendBurst are awaiting an answer or a send is waiting out a retry back-off (nothing may pass
   * it, so a later send never reaches the server before an earlier unacked one). Called whenever
   * that could change: a new send, a welcome, an answer, a retry timer.
   */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true; // re-entered (e.g. from a socket that answers synchronously): loop again below
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        for (const send of this.pending.values()) {
          if (!this.wire.welcomed || this.onSocketCount >= this.limits.resendBurst) break;
          if (send.onSocket) continue;
          if (send.retryTimer !== undefined) break;
          if (!this.wire.transmit(send.frame)) break; // the socket is going away
          send.onSocket = true;
          this.onSocketCount++;
        }
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private takeOffSocket(send: PendingSend): void {
    if (!send.onSocket) return;
    send.onSocket = false;
    this.onSocketCount--;
  }

  /** The connection ended (or a new session began): nothing is on the wire any more. */
  private takeAllOffSocket(): void {
    for (const send of this.pending.values()) send.onSocket = false;
    this.onSocketCount = 0;
  }

  /**
   * After a 1009 close we cannot tell which frame was too big; the largest one in flight is the
   * likely culprit. Failing it stops the reconnect-resend-1009 loop it would otherwise cause.
   */
  private failLargestInFlight(): void {
    let largest: PendingSend | undefined;
    for (const send of this.pending.values()) {
      if (send.onSocket && (!largest || send.bytes > largest.bytes)) largest = send;
    }
    if (largest) {
      this.rejectSend(
        largest,
        new RelayError('too_large', 'the server closed the connection for a frame too large', largest.ref),
      );
    }
  }

  private resolveSend(send: PendingSend, ack: Ack): void {
    this.forget(send);
    send.resolve(ack);
  }

  private rejectSend(send: PendingSend, err: RelayError): void {
    this.forget(send);
    send.reject(err);
  }

  private forget(send: PendingSend): void {
    clearTimeout(send.deadline);
    clearTimeout(send.retryTimer);
    send.retryTimer = undefined;
    this.takeOffSocket(send);
    this.pending.delete(send.ref);
    this.pump(); // a slot freed up, or the send that held the others back is gone
  }

  private newBackoff(): Backoff {
    const { backoffBaseMs: baseMs, backoffCapMs: capMs, random } = this.limits;
    return new Backoff({ baseMs, capMs, random });
  }
}
