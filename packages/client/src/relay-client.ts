import type { Ack, ClientEvents, ConnectionState, ConnectOptions, SendOptions, Session } from './api.js';
import { ConnectionLoop } from './connection-loop.js';
import { Delivery } from './delivery.js';
import { Emitter } from './emitter.js';
import { RelayError, describe } from './errors.js';
import { PresenceSubscriptions } from './presence.js';
import type { PresenceSubscription } from './presence.js';
import { parseServerFrame } from './protocol.js';
import type { WelcomePayload } from './protocol.js';
import { SendQueue } from './send-queue.js';
import { globalWebSocket } from './socket.js';
import type { WebSocketConstructor } from './socket.js';
import { TRANSPORTS } from './transport.js';
import type { Transport } from './transport.js';
import type { FetchLike } from './long-poll-socket.js';
import { memoryStorage } from './storage.js';
import { Typing } from './typing.js';

export type {
  Ack,
  ClientEvents,
  ConnectionState,
  ConnectOptions,
  DisconnectEvent,
  Message,
  Receipt,
  ResetEvent,
  SendOptions,
  Session,
} from './api.js';
export type { PresenceChange, PresenceEvents, PresenceSubscription } from './presence.js';
export type { TypingEvent } from './typing.js';

/** markRead frames wait this long so that a burst of calls (one per message read) becomes one frame per conversation. */
const READ_COALESCE_MS = 200;

/**
 * A connection to the relay that survives network failures. See README.md for the guarantees.
 *
 * Listeners run synchronously. In particular a `message` listener must finish handling the
 * message before it returns: once it returns, the message counts as delivered, and its cursor is
 * stored, confirmed, and sent in the next `hello`.
 *
 * The work is done by three parts, wired together here: the connection loop (sockets, reconnects,
 * heartbeat, credentials), the send queue (sends until acked, paced and in order) and delivery
 * (exactly-once messages, the cursor, confirms). This class routes the server's frames to them and
 * runs the sequences that involve several of them: welcome and close.
 */
export class RelayClient extends Emitter<ClientEvents> {
  private readonly loop: ConnectionLoop;
  private readonly sends: SendQueue;
  private readonly delivery: Delivery;
  // v1.1 ephemeral live features
  private readonly typingState: Typing;
  private readonly presence: PresenceSubscriptions;
  private _state: ConnectionState = 'connecting';
  /** v1.1 markRead: the newest unsent read marker per conversation. */
  private readonly reads = new Map<string, number>();
  private readTimer: ReturnType<typeof setTimeout> | undefined;

  /** Prefer connect(); constructing the client starts connecting, exactly like connect() does. */
  constructor(options: ConnectOptions) {
    super();
    const settings = resolveOptions(options);
    this.loop = new ConnectionLoop(settings, {
      loadCursor: () => this.delivery.load(),
      hello: () => this.delivery.hello(),
      frame: (data) => this.onData(data),
      lost: (code) => this.sends.lost(code),
      giveUp: (err) => this.shutdown(err),
      setState: (state) => this.setState(state),
      disconnected: (event) => {
        this.typingState.disconnected();
        this.emit('disconnect', event);
      },
      error: (err) => this.emit('error', err),
      transport: (name) => this.emit('transport', name),
      cursor: () => this.delivery.lastCursor,
    });
    this.sends = new SendQueue(settings, this.loop);
    this.delivery = new Delivery(settings, this.loop, {
      deliver: (message) => this.emit('message', message),
      receipt: (receipt) => this.emit('receipt', receipt),
      error: (err) => this.emit('error', err),
    });
    this.typingState = new Typing(this.loop, settings, (event) => this.emit('typing', event));
    this.presence = new PresenceSubscriptions(this.loop, (err) => this.emit('error', err));
    // Asynchronous from the first await on, so listeners attached right after connect() see everything.
    this.loop.start();
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** The current connection's welcome, if the client is open. */
  get session(): Session | undefined {
    return this.loop.session;
  }

  /** The last delivery cursor handed to the app (what the next hello resumes from). */
  get lastCursor(): string | undefined {
    return this.delivery.lastCursor;
  }

  /** The transport of the current (or next) connection: `websocket` or `longpoll`. */
  get transport(): Transport {
    return this.loop.transport;
  }

  /** Sends waiting for an ack. */
  get pendingSends(): number {
    return this.sends.size;
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
    return this.sends.send(conversationId, body, options);
  }

  /**
   * v1.1 typing indicator: call on every keystroke in a conversation. Sends `start` at once and again
   * at most every `typingIntervalMs` while the user keeps typing, and `stop` after `typingIdleMs`
   * without a call. Best effort: nothing is queued while offline.
   */
  typing(conversationId: string): void {
    this.typingState.typing(conversationId);
  }

  /** v1.1: the user stopped typing (e.g. sent the message): sends `stop` now if a `start` went out. */
  stopTyping(conversationId: string): void {
    this.typingState.stop(conversationId);
  }

  /** v1.1: the other members typing in the conversation now (starts expire on their own). */
  typingUsers(conversationId: string): string[] {
    return this.typingState.typingUsers(conversationId);
  }

  /**
   * v1.1 presence: the live set of the conversation's online members, with `change` events. The
   * subscription is restored after every reconnect (a fresh snapshot; the differences are emitted as
   * changes). One subscription per conversation: subscribing twice returns the same one.
   */
  subscribePresence(conversationId: string): PresenceSubscription {
    return this.presence.subscribe(conversationId);
  }

  /**
   * v1.1: tells the server this user has read every message of the conversation up to `seq` (a
   * message's `seq`). The other members (in large conversations: the senders of those messages) get
   * a `receipt`. Coalesced per conversation (one frame per 200 ms, the newest seq) and kept while
   * disconnected, then sent after the next welcome. Markers only move forward: a lower seq than one
   * already sent changes nothing on the server.
   */
  markRead(conversationId: string, seq: number): void {
    if (typeof conversationId !== 'string' || conversationId.length === 0) {
      throw new TypeError('markRead: conversationId must be a non-empty string');
    }
    if (!Number.isSafeInteger(seq) || seq < 1)
      throw new RangeError('markRead: seq must be a positive integer');
    if (this._state === 'closed') return;
    this.reads.set(conversationId, Math.max(seq, this.reads.get(conversationId) ?? 0));
    this.readTimer ??= setTimeout(() => {
      this.readTimer = undefined;
      this.flushReads();
    }, READ_COALESCE_MS);
  }

  /** Sends the pending read markers on a welcomed socket; what cannot be sent waits for the next welcome. */
  private flushReads(): void {
    if (!this.loop.welcomed) return;
    for (const [conversationId, seq] of this.reads) {
      if (!this.loop.transmit({ type: 'read', payload: { conversation_id: conversationId, seq } })) return;
      this.reads.delete(conversationId);
    }
  }

  /**
   * Reconnects at once instead of waiting out the back-off (e.g. from a "retry now" button). A
   * no-op while open, while an attempt is under way, and once closed. Browsers do this by
   * themselves on the `online` event and when the tab becomes visible again.
   */
  reconnectNow(): void {
    this.loop.reconnectNow();
  }

  /**
   * Stops reconnecting, confirms the latest cursor, closes the socket and rejects pending sends
   * with `closed`. The promise resolves once the latest cursor is in storage.
   */
  close(): Promise<void> {
    this.shutdown(new RelayError('closed', 'the client was closed'));
    return this.delivery.flush();
  }

  /**
   * In this order: the batched confirm while the socket is still there (so the server can trim
   * right away); then the loop stops (no more frames, attempts or timers); then the pending sends
   * reject, so a listener of the `closed` state sees none left.
   */
  private shutdown(reason: RelayError): void {
    if (this.loop.stopped) return;
    this.typingState.close();
    this.presence.close();
    this.delivery.close();
    clearTimeout(this.readTimer);
    this.readTimer = undefined;
    this.loop.stop();
    this.sends.close(reason);
    this.setState('closed');
  }

  private setState(state: ConnectionState): void {
    if (state === this._state) return;
    this._state = state;
    this.emit('state', state);
  }

  /** A frame from the current socket (the loop has recorded it as a sign of life). */
  private onData(data: unknown): void {
    const parsed = parseServerFrame(data);
    if (!parsed.ok) {
      this.emit('error', new RelayError('bad_frame', `ignored a frame from the server: ${parsed.reason}`));
      return;
    }
    const frame = parsed.frame;
    switch (frame?.type) {
      case 'welcome':
        return this.onWelcome(frame.payload);
      case 'message':
        return this.delivery.message(frame.msg_id, frame.payload);
      case 'receipt':
        return this.delivery.receipt(frame.msg_id, frame.payload);
      case 'ack':
        return this.sends.acked(frame.msg_id, frame.payload);
      case 'typing':
        return this.typingState.received(frame.payload);
      case 'presence':
        return this.presence.received(frame.payload);
      case 'error': {
        const { code, message } = frame.payload;
        if (this.presence.refused(code, message, frame.msg_id)) return;
        if (!this.sends.refused(code, message, frame.msg_id)) {
          this.emit('error', new RelayError(code, message, frame.msg_id));
        }
        return;
      }
      default:
        return; // pong (liveness is recorded by the loop) or a type newer than this client
    }
  }

  /**
   * In this order: the loop marks the connection welcomed (the queue writes only then); delivery
   * adopts the server's position before any replayed message arrives; the queue re-sends; then
   * `open`, and `reset` last, after the app can see the client open.
   */
  private onWelcome(p: WelcomePayload): void {
    this.loop.welcome(p);
    this.delivery.welcome(p);
    this.sends.resend();
    this.presence.welcomed();
    this.flushReads();
    this.setState('open');
    if (!p.recovered && !this.loop.stopped) this.emit('reset', { cursor: this.delivery.presentedCursor });
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

/** Checks the options and applies the defaults: one settings object that every part reads its own fields from. */
function resolveOptions(options: ConnectOptions) {
  // Fail now rather than on every attempt later (URL.canParse would be neater, but older Safari lacks it).
  try {
    new URL(options.url);
  } catch {
    throw new TypeError(`connect: url is not a valid URL: ${String(options.url)}`);
  }
  if (options.token === undefined && options.getToken === undefined && options.userId === undefined) {
    throw new TypeError('connect: one of token, getToken or userId (dev mode) is required');
  }
  const transports = resolveTransports(options.transports);
  const fetchImpl = options.fetch ?? globalFetch();
  if (transports.includes('longpoll') && !fetchImpl) {
    throw new TypeError('connect: long polling needs fetch; pass one or leave longpoll out of transports');
  }
  // Long polling alone needs no WebSocket; the probe never runs then.
  const WebSocket =
    options.WebSocket ?? globalWebSocket() ?? (transports.includes('websocket') ? undefined : noWebSocket);
  if (!WebSocket) {
    throw new TypeError('connect: no global WebSocket; pass one, e.g. `WebSocket` from the ws package');
  }
  return {
    url: options.url,
    token: options.token,
    getToken: options.getToken,
    userId: options.userId,
    storage: options.storage ?? memoryStorage(),
    WebSocket,
    random: options.random ?? Math.random,
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
    transports,
    fallbackAfter: positive(options.fallbackAfter, 2, 'fallbackAfter'),
    wsRetryMs: positive(options.wsRetryMs, 30_000, 'wsRetryMs'),
    fetch: fetchImpl,
    typingIntervalMs: positive(options.typingIntervalMs, 2000, 'typingIntervalMs'),
    typingIdleMs: positive(options.typingIdleMs, 3000, 'typingIdleMs'),
  };
}

function resolveTransports(given: readonly Transport[] | undefined): readonly Transport[] {
  if (given === undefined) return TRANSPORTS;
  const valid = Array.isArray(given) && given.length > 0 && given.every((t) => TRANSPORTS.includes(t));
  if (!valid || new Set(given).size !== given.length) {
    throw new TypeError(`connect: transports must list 'websocket' and/or 'longpoll' once each`);
  }
  return given;
}

function globalFetch(): FetchLike | undefined {
  const f = (globalThis as unknown as { fetch?: FetchLike }).fetch;
  return f ? (url, init) => f(url, init) : undefined;
}

const noWebSocket = class {
  constructor() {
    throw new Error('no WebSocket implementation');
  }
} as unknown as WebSocketConstructor;

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!(typeof value === 'number' && value > 0 && Number.isFinite(value))) {
    throw new RangeError(`connect: ${name} must be a positive number`);
  }
  return value;
}
