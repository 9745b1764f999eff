/**
 * relay wire protocol v1, defined once. docs/protocol.md is its prose (a unit test keeps the doc's code
 * tables equal to the codes here); the server imports this package; the SDK, which has no runtime
 * dependencies, carries a generated copy of what it needs (`npm run protocol:generate`).
 *
 * The package ships its TypeScript sources: Node strips the types when it loads them, so there is no
 * build step. That is why every value lives in this one module: importing a value from a sibling
 * would need a `.ts` specifier, which the server's emitting compiler refuses. Type-only imports are
 * erased, so the frame types live next door in frames.ts.
 */
import type { ClientFrame } from './frames.ts';

export type {
  AckPayload,
  ClientFrame,
  ErrorPayload,
  MessagePayload,
  PresencePayload,
  ReceiptPayload,
  ServerFrame,
  TypingPayload,
  TypingState,
  WelcomePayload,
} from './frames.ts';

// ---- ids and limits ----

/** Longest user id, conversation id and delivery cursor (`hello.payload.last_msg_id`, `confirm.msg_id`). */
export const MAX_ID_LENGTH = 128;
/** Longest client ref (`send.msg_id`). */
export const MAX_REF_LENGTH = 64;
/** An `error` frame echoes at most this many characters of the refused frame's msg_id. */
export const MAX_ECHOED_REF = 64;

/**
 * User and conversation ids: one charset, safe in logs, keys and URLs. Frames, tokens (`sub`), dev
 * auth and the directory API use it.
 */
export const ID_PATTERN_SOURCE = `^[A-Za-z0-9_.:@-]{1,${MAX_ID_LENGTH}}$`;
export const ID_PATTERN = new RegExp(ID_PATTERN_SOURCE);

// ---- codes ----

/** `error.payload.code`; what produces each one is in docs/protocol.md. */
export const ERROR_CODES = [
  'bad_frame',
  'unknown_type',
  'too_large',
  'not_found',
  'forbidden',
  'rate_limited',
  'unavailable',
  'handshake_required',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

// ---- long polling (HTTP transport, docs/protocol.md "Long polling") ----

/** Where the long-polling endpoints live: `POST {POLL_PATH}/open`, `GET|POST|DELETE {POLL_PATH}/:sid`. */
export const POLL_PATH = '/v1/poll';

/**
 * `code` of a long-polling HTTP error body `{"code","message"}`, by HTTP status: the frame error
 * codes where one fits, plus `unauthorized` (401) and `session_expired` (410: open a new session).
 */
export const POLL_ERROR_STATUS = {
  bad_frame: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  session_expired: 410,
  too_large: 413,
  rate_limited: 429,
  unavailable: 503,
} as const;
export type PollErrorCode = keyof typeof POLL_ERROR_STATUS;

/** WebSocket close codes with a meaning in this protocol. */
export const CLOSE = {
  /** Bad or expired credentials: the token expired while connected, or (browsers) it was refused. */
  unauthorized: 4001,
  /** No `hello` within the handshake timeout. */
  handshakeTimeout: 4008,
  /** Kept sending frames over the per-connection budget after `rate_limited`. */
  flooding: 4029,
  /** A frame exceeded the server's size limit. */
  tooLarge: 1009,
  /** The server could not serve the session (e.g. outbox unreachable): reconnect and resume. */
  internal: 1011,
  /** The node is draining: reconnect (the load balancer sends us elsewhere). */
  draining: 1012,
  /** The client could not keep up: more than the server's MAX_BUFFERED_BYTES unsent to it. */
  slowConsumer: 1013,
} as const;

// ---- JSON schemas of the client frames (the gateway compiles them once) ----

/** Every frame: an object with a string `type`; `msg_id` and `payload`, when present, have these types. */
export const FRAME_SCHEMA = {
  type: 'object',
  required: ['type'],
  properties: {
    type: { type: 'string' },
    msg_id: { type: 'string' },
    payload: { type: 'object' },
  },
} as const;

// ---- v1.1 live features (ephemeral) ----

export const TYPING_STATES = ['start', 'stop'] as const;
export const PRESENCE_STATUSES = ['online', 'offline'] as const;

/** A frame whose payload names one conversation (presence.subscribe / presence.unsubscribe). */
const CONVERSATION_FRAME_SCHEMA = {
  type: 'object',
  required: ['payload'],
  properties: {
    msg_id: { type: 'string', minLength: 1, maxLength: MAX_REF_LENGTH },
    payload: {
      type: 'object',
      required: ['conversation_id'],
      properties: { conversation_id: { type: 'string', pattern: ID_PATTERN_SOURCE } },
    },
  },
} as const;

/**
 * Per client frame type, checked after FRAME_SCHEMA; a type not listed is `unknown_type`, a frame
 * that fails its schema `bad_frame`. Unknown fields are ignored (no `additionalProperties: false`).
 */
export const CLIENT_FRAME_SCHEMAS = {
  hello: {
    type: 'object',
    properties: {
      payload: {
        type: 'object',
        properties: { last_msg_id: { type: 'string', minLength: 1, maxLength: MAX_ID_LENGTH } },
      },
    },
  },
  send: {
    type: 'object',
    required: ['msg_id', 'payload'],
    properties: {
      msg_id: { type: 'string', minLength: 1, maxLength: MAX_REF_LENGTH },
      payload: {
        type: 'object',
        required: ['conversation_id', 'body'],
        properties: { conversation_id: { type: 'string', pattern: ID_PATTERN_SOURCE } },
      },
    },
  },
  confirm: {
    type: 'object',
    required: ['msg_id'],
    properties: { msg_id: { type: 'string', minLength: 1, maxLength: MAX_ID_LENGTH } },
  },
  ping: { type: 'object' },
  // v1.1 ephemeral frames
  typing: {
    type: 'object',
    required: ['payload'],
    properties: {
      msg_id: { type: 'string', minLength: 1, maxLength: MAX_REF_LENGTH },
      payload: {
        type: 'object',
        required: ['conversation_id', 'state'],
        properties: {
          conversation_id: { type: 'string', pattern: ID_PATTERN_SOURCE },
          state: { enum: TYPING_STATES },
        },
      },
    },
  },
  'presence.subscribe': CONVERSATION_FRAME_SCHEMA,
  'presence.unsubscribe': CONVERSATION_FRAME_SCHEMA,
  // v1.1: `seq` is a conversation order number (MessagePayload.seq); above the head it is clamped.
  read: {
    type: 'object',
    required: ['payload'],
    properties: {
      payload: {
        type: 'object',
        required: ['conversation_id', 'seq'],
        properties: {
          conversation_id: { type: 'string', pattern: ID_PATTERN_SOURCE },
          seq: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
        },
      },
    },
  },
} as const satisfies Record<ClientFrame['type'], object>;
