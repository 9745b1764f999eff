import type { Transport } from './transport.js';
import type { FetchLike } from './long-poll-socket.js';
// The client's public shapes: options in, events and results out. relay-client.ts exports them
// (index.ts takes them from there); the parts of the client import them from here.
import type { RelayError } from './errors.js';
import type { TypingEvent } from './typing.js';
import type { WebSocketConstructor } from './socket.js';
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
  /** v1.1 typing(): a `start` is re-sent at most this often while typing. Default 2000 ms (the server's relay interval). */
  typingIntervalMs?: number;
  /** v1.1 typing(): no keystroke for this long sends `stop`. Default 3000 ms. */
  typingIdleMs?: number;
  /** Uniform random in [0, 1) used for jitter; injectable for tests. Default Math.random. */
  random?: () => number;
  /**
   * Transports to use, in order of preference. Default `['websocket', 'longpoll']`: WebSocket, and
   * HTTP long polling (derived from `url`: `ws(s)://host/ws` -> `http(s)://host/v1/poll`) when
   * WebSocket keeps failing. `['longpoll']` uses long polling only.
   */
  transports?: readonly Transport[];
  /** WebSocket attempts in a row that fail before `welcome` before falling back to long polling. Default 2. */
  fallbackAfter?: number;
  /** While on long polling, try WebSocket again in the background this often. Default 30 000 ms. */
  wsRetryMs?: number;
  /** `fetch` for long polling. Default: globalThis.fetch (browsers, Node >= 18). */
  fetch?: FetchLike;
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
  /**
   * v1.1: the message's order number in its conversation: gapless and increasing in the order the
   * server acked the messages, the same on every device. Absent from servers older than v1.1.
   */
  seq?: number;
}

/** v1.1: a member's delivered or read marker moved forward (delivered like a message, once, in order). */
export interface Receipt {
  /** The delivery cursor (it advances like a message's). */
  cursor: string;
  conversationId: string;
  /** The member whose marker moved (possibly this user, from another device). */
  userId: string;
  kind: 'delivered' | 'read';
  /** Every message of the conversation with `seq` up to this one is delivered to / read by the member. */
  seq: number;
  ts: number;
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
  /** v1.1 */
  receipt: Receipt;
  reset: ResetEvent;
  disconnect: DisconnectEvent;
  error: RelayError;
  /** The transport now in use: on the first welcome and whenever a connection uses another one. */
  transport: Transport;
  /** v1.1: another member started or stopped typing (a start also stops on its own when it expires). */
  typing: TypingEvent;
}
