import { Backoff } from './backoff.js';
import { Deduper } from './dedupe.js';
import { Emitter } from './emitter.js';
import { RelayError } from './errors.js';
import { newRef, utf8Length } from './ids.js';
import { CloseCode, parseServerFrame } from './protocol.js';
import type { ClientFrame, ServerFrame, WelcomePayload } from './protocol.js';
import { OPEN, abandon, globalWebSocket } from './socket.js';
import type { WebSocketConstructor, WebSocketLike } from './socket.js';
import { CursorWriter, memoryStorage } from './storage.js';
import type { CursorStorage } from './storage.js';

/**
 * `connecting`: the first connection attempt. `open`: the server's welcome arrived (sends flow).
 * `reconnecting`: the connection was lost and the client is retrying. `closed`: final.
 */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnectOptions {
  /** The WebSocket endpoint, e.g. `wss://relay.example.com/ws`. Auth query parameters are added for you. */
  url: string;
  /** A JWT, sent as `?token=`. With getToken too, it is used for the first attempt only. */
  token?: string;
  /**
   * Called before every connection attempt (return a cached token while it is valid). After the
   * server refuses a token (close 4001 or HTTP 401) the client does not reconnect until this
   * returns a different token; it asks again with back-off.
   */
  getToken?: () => string | Promise<string>;
  /** Dev mode only: sent as `?user_id=` when there is no token. */
  userId?: string;
  /** Where the delivery cursor is kept between runs. Default: memoryStorage(). */
  storage?: CursorStorage;
  /** WebSocket implementation. Default: globalThis.WebSocket. On Node 20 pass the `ws` package's class. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect back-off: first ceiling (default 100 ms), doubling up to backoffCapMs (default 30 s). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** A connection that stays up this long after welcome resets the back-off. Default 10 000 ms. */
  healthyAfterMs?: number;
  /** Give up on an attempt that has not reached welcome after this long. Default 15 000 ms. */
  connectTimeoutMs?: number;
  /** Most sends waiting for an ack (queued or in flight); beyond it send() rejects `queue_full`. Default 1000. */
  maxQueue?: number;
  /** Total time a send may take before it rejects `timeout`. Default 30 000 ms. */
  sendTimeoutMs?: number;
  /**
   * Most sends on the wire awaiting an answer at once. The rest (e.g. everything queued while
   * offline, re-sent after a reconnect) wait their turn, in send() order, and go out as acks come
   * back. Default 100.
   */
  resendBurst?: number;
  /** At most one `confirm` per interval (always the latest cursor). Default 1000 ms. */
  confirmIntervalMs?: number;
  /** How many recent cursors and message ids the duplicate filter remembers. Default 10 000. */
  dedupeCapacity?: number;
  /** Sends whose frame exceeds this many bytes reject `too_large` without being sent. Default 65 536 (the server's default). */
  maxFrameBytes?: number;
  /** Uniform random in [0, 1) used for jitter; injectable for tests. Default Math.random. */
  random?: () => number;
}

/** A delivered message, as the application sees it. */
export interface Message {
  /** The delivery cursor (opaque; compare only for equality). */
  cursor: string;
  /** Server message id: the same in every recipient's copy. */
  id: string;
  conversationId: string;
  from: string;
  ts: number;
  body: unknown;
}

/** The server's acknowledgement of a send: the message is durable. */
export interface Ack {
  /** Server message id. */
  id: string;
  ts: number;
  conversationId: string;
  /** The client ref the send used. */
  ref: string;
}

export interface SendOptions {
  /**
   * The idempotency key. Default: a fresh random one. Pass the `ref` of an earlier send (e.g. from
   * the RelayError of a timeout) to retry it: the server answers with the original ack instead of
   * creating a second message, if the first attempt is less than 10 minutes old.
   */
  ref?: string;
  /** Overrides sendTimeoutMs for this send. */
  timeoutMs?: number;
}

/** What the server said in its welcome. */
export interface Session {
  userId: string;
  nodeId: string;
  heartbeatMs: number;
  recovered: boolean;
}

/** Fired when the server could not resume from our cursor: some deliveries are lost, reload state. */
export interface ResetEvent {
  /** The cursor the client presented (undefined would mean a fresh device). */
  cursor: string | undefined;
}

export interface DisconnectEvent {
  code: number;
  reason: string;
  /** Delay before the next attempt; absent when the client gives up (state becomes `closed`). */
  retryInMs?: number;
}

export interface ClientEvents {
  state: ConnectionState;
  message: Message;
  reset: ResetEvent;
  disconnect: DisconnectEvent;
  error: RelayError;
}

type Timer = ReturnType<typeof setTimeout>;

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

const DEFAULT_HEARTBEAT_MS = 25_000;
/**
 * Retry delays after `rate_limited`: the server stored nothing and refills its token bucket over
 * time, so wait at least half the ceiling (an immediate retry would only be refused again).
 */
const RATE_LIMIT_BASE_MS = 200;
const RATE_LIMIT_CAP_MS = 5_000;
/** Close code for connections the client abandons itself (heartbeat or connect timeout); 4000-4999 is app-defined. */
const CLIENT_GAVE_UP = 4000;

/**
 * A connection to the relay that survives network failures. See README.md for the guarantees.
 *
 * Listeners run synchronously. In particular a `message` listener must finish handling the
 * message before it returns: once it returns, the message counts as delivered, and its cursor is
 * stored, confirmed, and sent in the next `hello`.
 */
export class RelayClient extends Emitter<ClientEvents> {
  private readonly cfg: Required<
    Omit<ConnectOptions, 'token' | 'getToken' | 'userId' | 'storage' | 'WebSocket' | 'random'>
  >;
  private readonly initialToken: string | undefined;
  private readonly getToken: (() => string | Promise<string>) | undefined;
  private readonly userId: string | undefined;
  private readonly storage: CursorStorage;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly random: () => number;
  private readonly backoff: Backoff;
  private readonly dedupe: Deduper;
  private readonly writer: CursorWriter;
  /** Sends waiting for an ack, in send() order (Map iteration order is insertion order). */
  private readonly pending = new Map<string, PendingSend>();
  /** How many pending sends are on the current socket awaiting an answer (`onSocket`). */
  private onSocketCount = 0;
  private pumping = false;
  private pumpAgain = false;

  private _state: ConnectionState = 'connecting';
  private _session: Session | undefined;
  private stopped = false;
  private attempts = 0;

  // The current socket and what we know about it.
  private ws: WebSocketLike | undefined;
  private socketOpened = false;
  private socketError = '';
  private welcomed = false;
  private helloCursor: string | undefined;
  private tokenInUse: string | undefined;
  private lastFrameAt = 0;

  /** The token the server refused last; we wait for getToken to return something else. */
  private rejectedToken: string | undefined;
  /** An immediate reconnect after 1012 was used and no welcome came since (prevents a hot loop). */
  private drainRetried = false;

  private loaded = false;
  /** Last cursor delivered to the app. */
  private cursor: string | undefined;
  /** Last cursor the server was told about (in hello or confirm) on this connection. */
  private confirmed: string | undefined;

  private retryTimer: Timer | undefined;
  private connectTimer: Timer | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private idleTimer: Timer | undefined;
  private healthyTimer: Timer | undefined;
  private confirmTimer: Timer | undefined;

  /** Prefer connect(); constructing the client starts connecting, exactly like connect() does. */
  constructor(options: ConnectOptions) {
    super();
    // Fail now rather than on every attempt later (URL.canParse would be neater, but older Safari lacks it).
    try {
      new URL(options.url);
    } catch {
      throw new TypeError(`connect: url is not a valid URL: ${String(options.url)}`);
    }
    if (options.token === undefined && options.getToken === undefined && options.userId === undefined) {
      throw new TypeError('connect: one of token, getToken or userId (dev mode) is required');
    }
    const WebSocketImpl = options.WebSocket ?? globalWebSocket();
    if (!WebSocketImpl) {
      throw new TypeError('connect: no global WebSocket; pass one, e.g. `WebSocket` from the ws package');
    }
    this.cfg = {
      url: options.url,
      backoffBaseMs: positive(options.backoffBaseMs, 100, 'backoffBaseMs'),
      backoffCapMs: positive(options.backoffCapMs, 30_000, 'backoffCapMs'),
      healthyAfterMs: positive(options.healthyAfterMs, 10_000, 'healthyAfterMs'),
      connectTimeoutMs: positive(options.connectTimeoutMs, 15_000, 'connectTimeoutMs'),
      maxQueue: positive(options.maxQueue, 1000, 'maxQueue'),
      sendTimeoutMs: positive(options.sendTimeoutMs, 30_000, 'sendTimeoutMs'),
      resendBurst: positive(options.resendBurst, 100, 'resendBurst'),
      confirmIntervalMs: positive(options.confirmIntervalMs, 1000, 'confirmIntervalMs'),
      dedupeCapacity: positive(options.dedupeCapacity, 10_000, 'dedupeCapacity'),
      maxFrameBytes: positive(options.maxFrameBytes, 64 * 1024, 'maxFrameBytes'),
    };
    this.initialToken = options.token;
    this.getToken = options.getToken;
    this.userId = options.userId;
    this.storage = options.storage ?? memoryStorage();
    this.WebSocketImpl = WebSocketImpl;
    this.random = options.random ?? Math.random;
    this.backoff = this.newBackoff();
    this.dedupe = new Deduper(this.cfg.dedupeCapacity);
    this.writer = new CursorWriter(this.storage, (err) =>
      this.emit(
        'error',
        new RelayError('storage_error', `could not save the cursor: ${describe(err)}`, undefined, {
          cause: err,
        }),
      ),
    );
    // Asynchronous from the first await on, so listeners attached right after connect() see everything.
    void this.attempt();
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** The current connection's welcome, if the client is open. */
  get session(): Session | undefined {
    return this.welcomed ? this._session : undefined;
  }

  /** The last delivery cursor handed to the app (what the next hello resumes from). */
  get lastCursor(): string | undefined {
    return this.cursor;
  }

  /** Sends waiting for an ack. */
  get pendingSends(): number {
    return this.pending.size;
  }

  /** Resolves when the client is (or next becomes) open; rejects `closed` if it closes first. */
  whenOpen(): Promise<void> {
    if (this._state === 'open') return Promise.resolve();
    if (this._state === 'closed') return Promise.reject(new RelayError('closed', 'the client is closed'));
    return new Promise((resolve, reject) => {
      const off = this.on('state', (state) => {
        if (state === 'open') {
          off();
          resolve();
        } else if (state === 'closed') {
          off();
          reject(new RelayError('closed', 'the client closed before it opened'));
        }
      });
    });
  }

  /**
   * Sends `body` (any JSON value) to a conversation. Resolves with the server's ack once the message
   * is durable. Queued while disconnected and re-sent after every reconnect with the same ref, so
   * retries never create a second message; after `unavailable` or `rate_limited` the same frame is
   * sent again after a back-off. Sends go on the wire in call order, at most `resendBurst` awaiting
   * an answer at once. Rejects with a RelayError whose `code` is the server's error code, or
   * `timeout`, `queue_full`, `too_large`, `invalid_argument`, `closed`; `err.ref` is the ref to
   * reuse for a retry.
   */
  send(conversationId: string, body: unknown, options: SendOptions = {}): Promise<Ack> {
    const ref = options.ref ?? newRef();
    const fail = (code: string, message: string) => Promise.reject<Ack>(new RelayError(code, message, ref));
    if (this.stopped) return fail('closed', 'the client is closed');
    if (typeof conversationId !== 'string' || conversationId.length === 0) {
      return fail('invalid_argument', 'conversationId must be a non-empty string');
    }
    if (typeof ref !== 'string' || ref.length < 1 || ref.length > 64) {
      return fail('invalid_argument', 'ref must be a string of 1 to 64 characters');
    }
    if (this.pending.has(ref)) return fail('invalid_argument', `a send with ref "${ref}" is already pending`);
    if (this.pending.size >= this.cfg.maxQueue) {
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
    if (bytes > this.cfg.maxFrameBytes) {
      return fail('too_large', `the frame is ${bytes} bytes; the limit is ${this.cfg.maxFrameBytes}`);
    }
    const timeoutMs = options.timeoutMs ?? this.cfg.sendTimeoutMs;

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

  /**
   * Stops reconnecting, confirms the latest cursor, closes the socket and rejects pending sends
   * with `closed`. The promise resolves once the latest cursor is in storage.
   */
  close(): Promise<void> {
    this.shutdown(new RelayError('closed', 'the client was closed'));
    return this.writer.flush();
  }

  // ---- connection lifecycle ----

  private async attempt(): Promise<void> {
    this.retryTimer = undefined;
    if (!this.loaded) {
      try {
        this.cursor = (await this.storage.get()) || undefined;
      } catch (err) {
        // Better to connect as a fresh device (the server replays what it retains) than not at all.
        const msg = `could not load the cursor, connecting as a fresh device: ${describe(err)}`;
        this.emit('error', new RelayError('storage_error', msg, undefined, { cause: err }));
      }
      this.loaded = true;
      if (this.stopped) return;
    }

    let token = this.initialToken;
    if (this.getToken && (this.attempts > 0 || token === undefined)) {
      try {
        token = await this.getToken();
      } catch (err) {
        if (this.stopped) return;
        this.scheduleRetry(this.backoff.next());
        this.emit(
          'error',
          new RelayError('token_error', `getToken failed: ${describe(err)}`, undefined, { cause: err }),
        );
        return;
      }
      if (this.stopped) return;
      if (token === this.rejectedToken) {
        // Same token the server just refused: connecting again would only be refused again.
        this.scheduleRetry(this.backoff.next());
        return;
      }
    }
    this.attempts++;
    this.openSocket(token);
  }

  private openSocket(token: string | undefined): void {
    const url = new URL(this.cfg.url);
    if (token !== undefined) url.searchParams.set('token', token);
    else if (this.userId !== undefined) url.searchParams.set('user_id', this.userId);

    let ws: WebSocketLike;
    try {
      ws = new this.WebSocketImpl(url.toString());
    } catch (err) {
      this.scheduleRetry(this.backoff.next());
      this.emit(
        'error',
        new RelayError('connection_error', `could not create the WebSocket: ${describe(err)}`),
      );
      return;
    }
    this.ws = ws;
    this.tokenInUse = token;
    this.socketOpened = false;
    this.socketError = '';
    this.welcomed = false;

    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.socketOpened = true;
      this.helloCursor = this.cursor;
      this.transmit({
        type: 'hello',
        payload: this.cursor === undefined ? {} : { last_msg_id: this.cursor },
      });
    };
    ws.onmessage = (event) => {
      if (ws === this.ws) this.onData(event.data);
    };
    ws.onerror = (event) => {
      const message = (event as { message?: unknown } | null)?.message;
      if (typeof message === 'string') this.socketError = message;
    };
    ws.onclose = (event) => {
      if (ws === this.ws) this.onDisconnected(event.code, event.reason ?? '');
    };
    this.connectTimer = setTimeout(() => this.abandonSocket('connect timeout'), this.cfg.connectTimeoutMs);
  }

  /** We decided the connection is dead: don't wait for a close handshake that may never complete. */
  private abandonSocket(reason: string): void {
    if (this.ws) this.onDisconnected(CLIENT_GAVE_UP, reason);
  }

  private onDisconnected(code: number, reason: string): void {
    // Closed already (close event) or given up on by us: either way, stop listening and let it go.
    if (this.ws) abandon(this.ws, CLIENT_GAVE_UP, reason);
    this.ws = undefined;
    this.welcomed = false;
    this.clearConnectionTimers();
    if (this.stopped) return;

    // A browser reports an HTTP 401 on the upgrade only as a close (1006) before open; `ws` also
    // says "Unexpected server response: 401" in its error event, which we can trust.
    const unauthorized =
      code === CloseCode.unauthorized || (!this.socketOpened && /\b401\b/.test(this.socketError));
    if (unauthorized && !this.getToken) {
      const err = new RelayError(
        'unauthorized',
        'the server refused the credentials and there is no getToken',
      );
      this.emit('disconnect', { code, reason });
      this.emit('error', err);
      this.shutdown(err);
      return;
    }
    if (unauthorized) this.rejectedToken = this.tokenInUse;
    if (code === CloseCode.tooLarge) this.failLargestInFlight();
    this.takeAllOffSocket();

    // Draining is orderly: go elsewhere at once. Only once per welcome, though, so a fleet that
    // keeps answering 1012 is retried with back-off rather than in a tight loop.
    let delay: number;
    if (code === CloseCode.draining && !this.drainRetried) {
      this.drainRetried = true;
      delay = 0;
    } else {
      delay = this.backoff.next();
    }
    this.scheduleRetry(delay);
    this.setState('reconnecting');
    this.emit('disconnect', { code, reason, retryInMs: delay });
    if (unauthorized) {
      this.emit(
        'error',
        new RelayError(
          'unauthorized',
          'the server refused the token; waiting for getToken() to return a new one',
        ),
      );
    }
  }

  private scheduleRetry(delay: number): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.attempt(), delay);
  }

  private shutdown(reason: RelayError): void {
    if (this.stopped) return;
    const ws = this.ws;
    if (ws) this.sendConfirm(); // the batched confirm, so the server can trim right away
    this.stopped = true;
    this.ws = undefined;
    this.welcomed = false;
    if (ws) abandon(ws, 1000, 'client closed');
    this.clearConnectionTimers();
    clearTimeout(this.retryTimer);
    clearTimeout(this.confirmTimer);
    for (const send of [...this.pending.values()]) {
      this.rejectSend(send, new RelayError(reason.code, reason.message, send.ref));
    }
    this.setState('closed');
  }

  private clearConnectionTimers(): void {
    clearTimeout(this.connectTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.healthyTimer);
    this.connectTimer = this.pingTimer = this.idleTimer = this.healthyTimer = undefined;
  }

  private setState(state: ConnectionState): void {
    if (state === this._state) return;
    this._state = state;
    this.emit('state', state);
  }

  // ---- inbound frames ----

  private onData(data: unknown): void {
    this.lastFrameAt = Date.now(); // any frame proves the connection alive, even one we cannot parse
    const parsed = parseServerFrame(data);
    if (!parsed.ok) {
      this.emit('error', new RelayError('bad_frame', `ignored a frame from the server: ${parsed.reason}`));
      return;
    }
    const frame: ServerFrame | undefined = parsed.frame;
    switch (frame?.type) {
      case 'welcome':
        return this.onWelcome(frame.payload);
      case 'message': {
        const { msg_id: cursor, payload: p } = frame;
        return this.onMessage({
          cursor,
          id: p.id,
          conversationId: p.conversation_id,
          from: p.from,
          ts: p.ts,
          body: p.body,
        });
      }
      case 'ack': {
        const send = this.pending.get(frame.payload.ref);
        // Unknown ref: a second ack for a retried send, or one that already timed out.
        if (send) {
          const { ref, conversation_id: conversationId, ts } = frame.payload;
          this.resolveSend(send, { id: frame.msg_id, ts, conversationId, ref });
        }
        return;
      }
      case 'error':
        return this.onServerError(frame.payload.code, frame.payload.message, frame.msg_id);
      default:
        return; // pong (liveness is recorded above) or a type newer than this client
    }
  }

  private onWelcome(p: WelcomePayload): void {
    this.clearConnectionTimers(); // the connect timeout, and the heartbeat of a (buggy) earlier welcome
    this.welcomed = true;
    this.drainRetried = false;
    this.confirmed = this.helloCursor;
    const heartbeatMs = p.heartbeat_ms || DEFAULT_HEARTBEAT_MS;
    this._session = { userId: p.user_id, nodeId: p.node_id, heartbeatMs, recovered: p.recovered };
    this.startHeartbeat(heartbeatMs);
    this.healthyTimer = setTimeout(() => this.backoff.reset(), this.cfg.healthyAfterMs);

    if (!p.recovered) {
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

    // Every unacked send goes out again, in the original order and with the original ref (the
    // server answers an already-stored one with its original ack, so nothing is duplicated), at
    // most resendBurst at a time. A new connection has a fresh rate limit: no back-off carries over.
    this.takeAllOffSocket();
    for (const send of this.pending.values()) {
      clearTimeout(send.retryTimer);
      send.retryTimer = undefined;
    }
    this.pump();
    this.setState('open');
    if (!p.recovered && !this.stopped) this.emit('reset', { cursor: this.helloCursor });
  }

  private startHeartbeat(heartbeatMs: number): void {
    this.pingTimer = setInterval(() => this.transmit({ type: 'ping' }), heartbeatMs);
    // One timer that re-arms itself for the remaining time, instead of resetting a timer per frame.
    const limit = 2 * heartbeatMs;
    const check = () => {
      const idle = Date.now() - this.lastFrameAt;
      if (idle >= limit) this.abandonSocket('heartbeat timeout');
      else this.idleTimer = setTimeout(check, limit - idle);
    };
    this.idleTimer = setTimeout(check, limit);
  }

  private onMessage(message: Message): void {
    const verdict = this.dedupe.check(message.cursor, message.id, this.cursor);
    if (verdict === 'skip') return;
    if (verdict === 'deliver') this.emit('message', message);
    // Delivered (or a duplicate of something delivered): from here on it is covered by the cursor.
    this.cursor = message.cursor;
    this.writer.write(message.cursor);
    this.scheduleConfirm();
  }

  private onServerError(code: string, message: string, ref: string | undefined): void {
    const send = ref === undefined ? undefined : this.pending.get(ref);
    if (!send) {
      this.emit('error', new RelayError(code, message, ref));
    } else if (code === 'unavailable') {
      send.retryBackoff ??= this.newBackoff();
      this.retryLater(send, send.retryBackoff.next());
    } else if (code === 'rate_limited') {
      send.throttleBackoff ??= new Backoff({
        baseMs: RATE_LIMIT_BASE_MS,
        capMs: RATE_LIMIT_CAP_MS,
        random: this.random,
        jitter: 'equal',
      });
      this.retryLater(send, send.throttleBackoff.next());
    } else {
      this.rejectSend(send, new RelayError(code, message, ref));
    }
  }

  // ---- sends ----

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
          if (!this.welcomed || this.onSocketCount >= this.cfg.resendBurst) break;
          if (send.onSocket) continue;
          if (send.retryTimer !== undefined) break;
          if (!this.transmit(send.frame)) break; // the socket is going away
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

  // ---- confirms ----

  private scheduleConfirm(): void {
    if (this.confirmTimer !== undefined || this.stopped) return;
    this.confirmTimer = setTimeout(() => {
      this.confirmTimer = undefined;
      this.sendConfirm();
    }, this.cfg.confirmIntervalMs);
  }

  /** Cumulative: one confirm covers every delivery up to the cursor. Offline, the next hello carries it instead. */
  private sendConfirm(): void {
    const cursor = this.cursor;
    if (!this.welcomed || cursor === undefined || cursor === this.confirmed) return;
    if (this.transmit({ type: 'confirm', msg_id: cursor })) this.confirmed = cursor;
  }

  // ---- plumbing ----

  private transmit(frame: ClientFrame | string): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
      return true;
    } catch {
      return false; // the socket is going away; its close event drives what happens next
    }
  }

  private newBackoff(): Backoff {
    return new Backoff({ baseMs: this.cfg.backoffBaseMs, capMs: this.cfg.backoffCapMs, random: this.random });
  }

  protected override listenerFailed(event: keyof ClientEvents, err: unknown): void {
    // A throwing 'error' listener has nowhere left to report to: surface it like the DOM would.
    if (event === 'error') return super.listenerFailed(event, err);
    const msg = `a "${String(event)}" listener threw: ${describe(err)}`;
    this.emit('error', new RelayError('handler_error', msg, undefined, { cause: err }));
  }
}

/** Opens a client connection. Attach listeners right away: nothing is emitted before the next tick. */
export function connect(options: ConnectOptions): RelayClient {
  return new RelayClient(options);
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!(typeof value === 'number' && value > 0 && Number.isFinite(value))) {
    throw new RangeError(`connect: ${name} must be a positive number`);
  }
  return value;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
