import type { Message, Receipt } from './api.js';
import { Deduper } from './dedupe.js';
import { RelayError, describe } from './errors.js';
import type { ClientFrame, MessagePayload, ReceiptPayload, WelcomePayload } from './protocol.js';
import { CursorWriter } from './storage.js';
import type { CursorStorage } from './storage.js';

/**
 * Delivery and the cursor: each message reaches the app once, and the cursor (the last one
 * delivered) is stored, sent in every hello, and confirmed in batches.
 *
 * Invariants:
 * - `cursor` never moves back: a replayed cursor is skipped before it can be adopted. It moves to
 *   each message handed over (or recognised as a duplicate), and to the server's own position after
 *   a welcome with `recovered: false`.
 * - `confirmed` is the last cursor the server was told on this connection (in hello or confirm); at
 *   most one confirm is scheduled, and none after close().
 */

type Timer = ReturnType<typeof setTimeout>;

/** The settings delivery reads (the connect options, defaults applied). */
export interface DeliveryOptions {
  storage: CursorStorage;
  dedupeCapacity: number;
  confirmIntervalMs: number;
}

/** The connection, as delivery sees it (for confirms). */
export interface ConfirmWire {
  /** The server's welcome arrived on the current socket. */
  readonly welcomed: boolean;
  /** Writes a frame to the current socket; false when there is none or it is going away. */
  transmit(frame: ClientFrame): boolean;
}

/** Where delivery hands messages and failures. */
export interface DeliveryHost {
  /** Hands a message to the app; when this returns, the message counts as delivered. */
  deliver(message: Message): void;
  /** v1.1: hands a receipt to the app; like deliver, it counts as delivered when this returns. */
  receipt(receipt: Receipt): void;
  error(err: RelayError): void;
}

export class Delivery {
  private readonly storage: CursorStorage;
  private readonly confirmIntervalMs: number;
  private readonly dedupe: Deduper;
  private readonly writer: CursorWriter;
  /** Last cursor delivered to the app. */
  private cursor: string | undefined;
  /** Last cursor the server was told about (in hello or confirm) on this connection. */
  private confirmed: string | undefined;
  /** The cursor the current connection's hello presented. */
  private helloCursor: string | undefined;
  private confirmTimer: Timer | undefined;
  private closed = false;

  constructor(
    options: DeliveryOptions,
    private readonly wire: ConfirmWire,
    private readonly host: DeliveryHost,
  ) {
    this.storage = options.storage;
    this.confirmIntervalMs = options.confirmIntervalMs;
    this.dedupe = new Deduper(options.dedupeCapacity);
    this.writer = new CursorWriter(this.storage, (err) =>
      this.host.error(
        new RelayError('storage_error', `could not save the cursor: ${describe(err)}`, undefined, {
          cause: err,
        }),
      ),
    );
  }

  /** The last delivery cursor handed to the app (what the next hello resumes from). */
  get lastCursor(): string | undefined {
    return this.cursor;
  }

  /** The cursor the current connection's hello presented (what a `reset` reports). */
  get presentedCursor(): string | undefined {
    return this.helloCursor;
  }

  /** Reads the stored cursor, once, before the first connection. */
  async load(): Promise<void> {
    try {
      this.cursor = (await this.storage.get()) || undefined;
    } catch (err) {
      // Better to connect as a fresh device (the server replays what it retains) than not at all.
      const msg = `could not load the cursor, connecting as a fresh device: ${describe(err)}`;
      this.host.error(new RelayError('storage_error', msg, undefined, { cause: err }));
    }
  }

  /** The hello for a new socket: resume after the cursor. */
  hello(): ClientFrame {
    this.helloCursor = this.cursor;
    return { type: 'hello', payload: this.cursor === undefined ? {} : { last_msg_id: this.cursor } };
  }

  /** The welcome: the server knows the hello's cursor; after `recovered: false`, adopt its position. */
  welcome(p: WelcomePayload): void {
    this.confirmed = this.helloCursor;
    if (p.recovered) return;
    // The server cannot resume after our cursor. A newer server says where its replay starts
    // instead: adopt that (and store it) before the replay arrives, so the next hello resumes
    // from there rather than reporting the same loss again. The cursors remembered so far were
    // positions before the gap (or in a store that was reset), so the duplicate filter keeps
    // only the message ids: what is replayed after the new position is delivered once.
    this.dedupe.forgetCursors();
    if (p.cursor !== undefined && p.cursor !== this.cursor) {
      this.cursor = p.cursor;
      this.confirmed = p.cursor; // the server's own position: no need to confirm it back
      this.writer.write(p.cursor);
    }
  }

  /** A `message` frame; `cursor` is its msg_id. */
  message(cursor: string, p: MessagePayload): void {
    this.take(cursor, p.id, () =>
      this.host.deliver({
        cursor,
        id: p.id,
        conversationId: p.conversation_id,
        from: p.from,
        ts: p.ts,
        body: p.body,
        ...(p.seq !== undefined ? { seq: p.seq } : {}),
      }),
    );
  }

  /** v1.1: a `receipt` frame shares the cursor sequence with messages (its key: what it says). */
  receipt(cursor: string, p: ReceiptPayload): void {
    this.take(cursor, `receipt ${p.conversation_id} ${p.user_id} ${p.kind} ${p.seq}`, () =>
      this.host.receipt({
        cursor,
        conversationId: p.conversation_id,
        userId: p.user_id,
        kind: p.kind,
        seq: p.seq,
        ts: p.ts,
      }),
    );
  }

  private take(cursor: string, id: string, hand: () => void): void {
    const verdict = this.dedupe.check(cursor, id, this.cursor);
    if (verdict === 'skip') return;
    if (verdict === 'deliver') hand();
    // Delivered (or a duplicate of something delivered): from here on it is covered by the cursor.
    this.cursor = cursor;
    this.writer.write(cursor);
    this.scheduleConfirm();
  }

  /** The client is closing: confirm the latest cursor now (so the server can trim right away), then no more confirms. */
  close(): void {
    this.sendConfirm();
    this.closed = true;
    clearTimeout(this.confirmTimer);
  }

  /** Resolves once the latest cursor is stored (or its write failed). */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  private scheduleConfirm(): void {
    if (this.confirmTimer !== undefined || this.closed) return;
    this.confirmTimer = setTimeout(() => {
      this.confirmTimer = undefined;
      this.sendConfirm();
    }, this.confirmIntervalMs);
  }

  /** Cumulative: one confirm covers every delivery up to the cursor. Offline, the next hello carries it instead. */
  private sendConfirm(): void {
    const cursor = this.cursor;
    if (!this.wire.welcomed || cursor === undefined || cursor === this.confirmed) return;
    if (this.wire.transmit({ type: 'confirm', msg_id: cursor })) this.confirmed = cursor;
  }
}
