/**
 * Wire protocol v1 frames: one JSON text message per frame, `{"type", "msg_id"?, "payload"?}`.
 * Field names are snake_case, exactly as on the wire.
 *
 * Types only (protocol.ts explains why): the SDK's generated copy takes this whole file.
 */

// ---- client -> server ----

export type ClientFrame =
  /** First frame of a connection. No payload, or no `last_msg_id`: a fresh device. */
  | { type: 'hello'; payload?: { last_msg_id?: string } }
  /** `msg_id` is the client ref, the idempotency key of the send. */
  | { type: 'send'; msg_id: string; payload: { conversation_id: string; body: unknown } }
  /** Cumulative: `msg_id` is the last delivery cursor the client has. */
  | { type: 'confirm'; msg_id: string }
  | { type: 'ping' }
  // v1.1 ephemeral frames (best effort, at most once; never stored). `msg_id`, when given, is echoed by errors.
  /** The sender is typing (`start`, repeat while typing) or stopped (`stop`) in a conversation. */
  | { type: 'typing'; msg_id?: string; payload: { conversation_id: string; state: TypingState } }
  /** Snapshot of the conversation's online members, then one `presence` frame per change. */
  | { type: 'presence.subscribe'; msg_id?: string; payload: { conversation_id: string } }
  | { type: 'presence.unsubscribe'; msg_id?: string; payload: { conversation_id: string } }
  // ---- v1.1: durable receipts ----
  /** "I have read everything up to `seq`" (a conversation order number, MessagePayload.seq). */
  | { type: 'read'; payload: { conversation_id: string; seq: number } };

export type TypingState = 'start' | 'stop';

// ---- server -> client ----

export interface WelcomePayload {
  user_id: string;
  node_id: string;
  heartbeat_ms: number;
  /** false: deliveries after the client's cursor were lost; the app must reload its state. */
  recovered: boolean;
  /**
   * The position the replay starts after (newer servers only). After `recovered: false` the client
   * adopts it as its cursor, so the next hello does not report the same loss again.
   */
  cursor?: string;
}

/** The message as every recipient sees it (the server stores it verbatim in each recipient's outbox). */
export interface MessagePayload {
  /** Server message id (unique per message, the same in every recipient's copy). */
  id: string;
  conversation_id: string;
  from: string;
  /** The server's acceptance time, milliseconds since the Unix epoch. */
  ts: number;
  body: unknown;
  /**
   * v1.1: the message's per-conversation order number: strictly increasing and gapless per
   * conversation in ack order, the same in every recipient's copy and on every replay. Absent only
   * on servers older than v1.1.
   */
  seq?: number;
}

/** v1.1: a member's delivered or read marker moved forward (durable, delivered like a message). */
export interface ReceiptPayload {
  conversation_id: string;
  /** The member whose marker moved. */
  user_id: string;
  kind: 'delivered' | 'read';
  /** The marker: every message of the conversation with `seq` up to this one is delivered/read. */
  seq: number;
  /** When the server accepted the marker, milliseconds since the Unix epoch. */
  ts: number;
}

export interface AckPayload {
  /** The client ref the send carried. */
  ref: string;
  conversation_id: string;
  ts: number;
}

export interface ErrorPayload {
  /** One of ERROR_CODES; typed as a string because a newer server may add codes. */
  code: string;
  message: string;
}

/** v1.1: another member typing. `expires_in_ms`: drop a `start` after this long unless renewed (0 on `stop`). */
export interface TypingPayload {
  conversation_id: string;
  user_id: string;
  state: TypingState;
  expires_in_ms: number;
}

/**
 * v1.1: a presence snapshot (`online`: the members online when the subscription started) or one
 * change (`user_id` + `status`).
 */
export type PresencePayload =
  | { conversation_id: string; online: string[] }
  | { conversation_id: string; user_id: string; status: 'online' | 'offline' };

export type ServerFrame =
  | { type: 'welcome'; payload: WelcomePayload }
  /** msg_id is the delivery cursor: opaque, strictly increasing per user. */
  | { type: 'message'; msg_id: string; payload: MessagePayload }
  /** msg_id is the server message id. */
  | { type: 'ack'; msg_id: string; payload: AckPayload }
  /** msg_id is the client ref of the send that failed, when there is one. */
  | { type: 'error'; msg_id?: string; payload: ErrorPayload }
  | { type: 'pong' }
  | { type: 'typing'; payload: TypingPayload }
  | { type: 'presence'; payload: PresencePayload }
  /** v1.1. msg_id is the delivery cursor (same sequence as `message`): confirm it like a message. */
  | { type: 'receipt'; msg_id: string; payload: ReceiptPayload };
