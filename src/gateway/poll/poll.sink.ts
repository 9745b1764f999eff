import { EventEmitter } from 'node:events';
import { decodeCursor } from '../../outbox/cursor';
import type { ConnectionSocket } from '../connection-socket';

const OPEN = 1;
const CLOSED = 3;
const MESSAGE_PREFIX = '{"type":"message","msg_id":"';

/** How the hello of a poll session was answered. */
export type Greeting = { ok: true; welcome: string } | { ok: false; code: number };

/** One poll's take: frames (JSON texts) and the highest message seq among them (0: none). */
export interface Take {
  frames: string[];
  lastSeq: number;
}

/** The answers a `POST /v1/poll/:sid` collects: whatever its frames produce synchronously, then their acks. */
export class AnswerCollector {
  readonly frames: string[] = [];
  private readonly waiting = new Set<string>();
  private resolve: (() => void) | undefined;

  /** A ref whose `ack`/`error` this request waits for. */
  expect(ref: string): void {
    this.waiting.add(ref);
  }

  /** Expected answers still missing. */
  get unanswered(): number {
    return this.waiting.size;
  }

  /** Takes an answer produced by this request's frames. */
  add(text: string): void {
    this.frames.push(text);
  }

  /** Takes the answer for `ref` if this request waits for it. */
  claim(ref: string, text: string): boolean {
    if (!this.waiting.delete(ref)) return false;
    this.frames.push(text);
    if (this.waiting.size === 0) this.resolve?.();
    return true;
  }

  /** Resolves once every expected ref is answered, or after `ms`, or when `ended` (whichever first). */
  settled(ms: number, ended: Promise<unknown>): Promise<void> {
    if (this.waiting.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.resolve = done;
      void ended.then(done);
    });
  }
}

/**
 * The write side of a long-polling session, standing where a WebSocket stands for a Connection: what
 * the Connection writes waits here until a poll takes it.
 *
 * Invariants:
 * - Frames leave in the order they were written, each at most once per copy of the session; message
 *   frames whose seq is at or below `floor` (what the client already has, from its cursor) are
 *   dropped, whether queued or written later. Connection writes messages in strictly increasing seq,
 *   so what a poll takes is the continuation of the client's cursor.
 * - `bufferedAmount` is the bytes queued: the Connection's own bound (MAX_BUFFERED_BYTES, close 1013)
 *   and its fill's back-pressure apply to a poll session as they do to a socket. A session closed that
 *   way is recreated by the next poll from its cursor: the outbox is the source of truth.
 * - At most one poll waits (`waiter`); a newer poll answers the older one with what is queued.
 * - The `ack`/`error` of a send that a POST is waiting for go to that POST (AnswerCollector), not the
 *   queue; everything written synchronously while a POST's frames are dispatched goes to it as well.
 * - The first frame written after construction answers the hello (`greeted`) and is not queued.
 */
export class PollSink extends EventEmitter implements ConnectionSocket {
  private state = OPEN;
  private queue: { text: string; seq: number }[] = [];
  private head = 0;
  private queued = 0;
  private floor = 0;
  private waiter: ((closed: boolean) => void) | undefined;
  private wakeScheduled = false;
  private capture: AnswerCollector | null = null;
  private readonly collectors = new Set<AnswerCollector>();
  private greet: ((g: Greeting) => void) | undefined;
  private _closeCode = 0;
  /** The hello's answer: `welcome`, or the close that followed an error. */
  readonly greeted: Promise<Greeting>;
  /** Resolves with the close code once the session's connection is closed. */
  readonly ended: Promise<number>;
  private endedResolve!: (code: number) => void;

  constructor() {
    super();
    this.greeted = new Promise((r) => (this.greet = r));
    this.ended = new Promise((r) => (this.endedResolve = r));
  }

  get readyState(): number {
    return this.state;
  }

  get bufferedAmount(): number {
    return this.queued;
  }

  get closeCode(): number {
    return this._closeCode;
  }

  get isOpen(): boolean {
    return this.state === OPEN;
  }

  send(text: string): void {
    if (this.state !== OPEN) return;
    if (this.greet) {
      // The hello's answer: `welcome`, or `error unavailable` followed by a close (greeted on close).
      if (text.startsWith('{"type":"welcome"')) {
        this.greet({ ok: true, welcome: text });
        this.greet = undefined;
      }
      return;
    }
    if (this.capture) {
      const ref = answerRef(text);
      if (ref === undefined || !this.capture.claim(ref, text)) this.capture.add(text);
      return;
    }
    if (this.collectors.size > 0 && this.claimAnswer(text)) return;
    const seq = messageSeq(text);
    if (seq > 0 && seq <= this.floor) return;
    this.queue.push({ text, seq });
    this.queued += text.length;
    this.scheduleWake();
  }

  close(code = 1000, _reason?: string): void {
    if (this.state === CLOSED) return;
    this.state = CLOSED;
    this._closeCode = code;
    this.greet?.({ ok: false, code });
    this.greet = undefined;
    this.queue = [];
    this.head = 0;
    this.queued = 0;
    this.waiter?.(true);
    this.waiter = undefined;
    this.endedResolve(code);
    // Like a socket, the close event comes after the call that closed it has returned.
    process.nextTick(() => this.emit('close', code));
  }

  terminate(): void {
    this.close(1006);
  }

  /** No transport-level ping: a poll session's liveness is its polls (PollService ends idle ones). */
  ping(): void {
    if (this.state === OPEN) this.emit('pong');
  }

  /** The client has every delivery up to `seq`: queued ones at or below it are dropped, later writes too. */
  advanceFloor(seq: number): void {
    if (seq <= this.floor) return;
    this.floor = seq;
    this.compact((f) => f.seq === 0 || f.seq > seq);
  }

  /**
   * Waits until something is queued, `ms` pass, `signal` aborts or the session closes, then takes up
   * to `maxFrames` frames and `maxBytes` bytes (a single larger frame goes alone). A poll already
   * waiting is answered first with whatever there is (nothing).
   */
  async take(ms: number, maxFrames: number, maxBytes: number, signal?: AbortSignal): Promise<Take> {
    this.waiter?.(false);
    this.waiter = undefined;
    if (this.head === this.queue.length && this.state === OPEN && !signal?.aborted) {
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      await new Promise<boolean>((resolve) => {
        const done = (closed: boolean) => {
          if (this.waiter === done) this.waiter = undefined;
          resolve(closed);
        };
        this.waiter = done;
        timer = setTimeout(() => done(false), ms);
        onAbort = () => done(false);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
    // An aborted poll takes nothing: what is queued stays for the next one.
    if (signal?.aborted) return { frames: [], lastSeq: 0 };
    const frames: string[] = [];
    let bytes = 0;
    let lastSeq = 0;
    while (this.head < this.queue.length && frames.length < maxFrames) {
      const f = this.queue[this.head];
      if (frames.length > 0 && bytes + f.text.length > maxBytes) break;
      frames.push(f.text);
      bytes += f.text.length;
      if (f.seq > lastSeq) lastSeq = f.seq;
      this.head++;
    }
    this.queued -= bytes;
    if (this.head > 1024 && this.head * 2 > this.queue.length) this.compact(() => true);
    return { frames, lastSeq };
  }

  /**
   * Runs `dispatch` (a POST's frames going through the gateway) with everything written meanwhile
   * going to `collector`; afterwards the collector keeps receiving the answers it `expect`s until
   * `release`.
   */
  collect(collector: AnswerCollector, dispatch: () => void): void {
    this.collectors.add(collector);
    const outer = this.capture;
    this.capture = collector;
    try {
      dispatch();
    } finally {
      this.capture = outer;
    }
  }

  release(collector: AnswerCollector): void {
    this.collectors.delete(collector);
  }

  private claimAnswer(text: string): boolean {
    const ref = answerRef(text);
    if (ref === undefined) return false;
    for (const c of this.collectors) if (c.claim(ref, text)) return true;
    return false;
  }

  /** Frames written in one synchronous run leave in one response. */
  private scheduleWake(): void {
    if (!this.waiter || this.wakeScheduled) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      this.waiter?.(false);
    });
  }

  private compact(keep: (f: { text: string; seq: number }) => boolean): void {
    const rest = this.queue.slice(this.head).filter(keep);
    this.queue = rest;
    this.head = 0;
    this.queued = rest.reduce((n, f) => n + f.text.length, 0);
  }
}

/** The seq of a `message` frame as Connection writes it (0 for any other frame). */
function messageSeq(text: string): number {
  if (!text.startsWith(MESSAGE_PREFIX)) return 0;
  const end = text.indexOf('"', MESSAGE_PREFIX.length);
  return decodeCursor(text.slice(MESSAGE_PREFIX.length, end))?.seq ?? 0;
}

/** The client ref an `ack` (payload.ref) or `error` (msg_id) answers; undefined for other frames. */
function answerRef(text: string): string | undefined {
  if (!text.startsWith('{"type":"ack"') && !text.startsWith('{"type":"error"')) return undefined;
  try {
    const f = JSON.parse(text) as { type: string; msg_id?: unknown; payload?: { ref?: unknown } };
    const ref = f.type === 'ack' ? f.payload?.ref : f.msg_id;
    return typeof ref === 'string' ? ref : undefined;
  } catch {
    return undefined;
  }
}
