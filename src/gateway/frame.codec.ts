import Ajv, { ErrorObject } from 'ajv';
import { ClientFrame, echoableRef, ErrorCode } from '../protocol/frames';
import { jsonDepthExceeds } from '../protocol/json-depth';

type Decoded =
  { ok: true; frame: ClientFrame } | { ok: false; code: ErrorCode; message: string; ref?: string };

/** MAX_JSON_DEPTH's default: deep enough for any sane body, shallow enough for every engine to store. */
const DEFAULT_MAX_JSON_DEPTH = 64;
/** Conversation ids share the user id charset, so they are safe in logs, keys and URLs. */
const ID_PATTERN = '^[A-Za-z0-9_.:@-]{1,128}$';

const KNOWN_TYPES = new Set(['hello', 'send', 'confirm', 'ping']);
const ajv = new Ajv({ allErrors: false, strict: false });

// Compiled once: validation runs for every inbound frame.
const envelopeSchema = {
  type: 'object',
  required: ['type'],
  properties: {
    type: { type: 'string' },
    msg_id: { type: 'string' },
    payload: { type: 'object' },
  },
} as const;
const validateEnvelope = ajv.compile(envelopeSchema);

const schemas = {
  hello: ajv.compile({
    type: 'object',
    properties: {
      payload: {
        type: 'object',
        properties: { last_msg_id: { type: 'string', minLength: 1, maxLength: 128 } },
      },
    },
  }),
  send: ajv.compile({
    type: 'object',
    required: ['msg_id', 'payload'],
    properties: {
      msg_id: { type: 'string', minLength: 1, maxLength: 64 },
      payload: {
        type: 'object',
        required: ['conversation_id', 'body'],
        properties: { conversation_id: { type: 'string', pattern: ID_PATTERN } },
      },
    },
  }),
  confirm: ajv.compile({
    type: 'object',
    required: ['msg_id'],
    properties: { msg_id: { type: 'string', minLength: 1, maxLength: 128 } },
  }),
  ping: ajv.compile({ type: 'object' }),
} as const;

function describe(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'invalid frame';
  const where = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : 'frame';
  return `${where} ${e.message ?? 'is invalid'}`;
}

/** The msg_id of a parsed frame, cut to what an error may echo. */
function refOf(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const ref = (raw as { msg_id?: unknown }).msg_id;
  return typeof ref === 'string' ? echoableRef(ref) : undefined;
}

/**
 * Parses and validates one text frame (its size is checked before). Never throws: bad input becomes
 * an error code for the client. Order: JSON, nesting depth (the frame object is level 1), shape.
 * Errors carry at most the first 64 characters of the frame's msg_id.
 */
export function decodeFrame(text: string, maxJsonDepth = DEFAULT_MAX_JSON_DEPTH): Decoded {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, code: 'bad_frame', message: 'frame is not valid JSON' };
  }
  // Bounded here, before anything is acked: every engine must be able to store and serialise it.
  if (jsonDepthExceeds(text, maxJsonDepth)) {
    return {
      ok: false,
      code: 'bad_frame',
      message: `frame nests deeper than ${maxJsonDepth} levels`,
      ref: refOf(raw),
    };
  }
  if (!validateEnvelope(raw)) {
    return { ok: false, code: 'bad_frame', message: describe(validateEnvelope.errors) };
  }
  const frame = raw as { type: string; msg_id?: string };
  const ref = refOf(raw);
  if (!KNOWN_TYPES.has(frame.type)) {
    return {
      ok: false,
      code: 'unknown_type',
      message: `unknown frame type "${frame.type.slice(0, 32)}"`,
      ref,
    };
  }
  const validate = schemas[frame.type as keyof typeof schemas];
  if (!validate(raw)) {
    return { ok: false, code: 'bad_frame', message: describe(validate.errors), ref };
  }
  return { ok: true, frame: raw as ClientFrame };
}

/**
 * The ref a frame refused without processing (over the frame budget) is answered with: a parse and
 * nothing more, so the client can still match the refusal to its send.
 */
export function frameRef(text: string): string | undefined {
  try {
    return refOf(JSON.parse(text));
  } catch {
    return undefined;
  }
}
