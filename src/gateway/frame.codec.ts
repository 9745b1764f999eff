import Ajv, { ErrorObject } from 'ajv';
import { ClientFrame, echoableRef, ErrorCode, ID_PATTERN_SOURCE } from '../protocol/frames';
import { jsonDepthExceeds, topLevelString } from '../protocol/json-depth';

type Decoded =
  { ok: true; frame: ClientFrame } | { ok: false; code: ErrorCode; message: string; ref?: string };

/** MAX_JSON_DEPTH's default: deep enough for any sane body, shallow enough for every engine to store. */
const DEFAULT_MAX_JSON_DEPTH = 64;
/** Conversation ids share the user id charset, so they are safe in logs, keys and URLs. */

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
        properties: { conversation_id: { type: 'string', pattern: ID_PATTERN_SOURCE } },
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
 * an error code for the client. Errors carry at most the first 64 characters of the frame's msg_id.
 *
 * Nesting depth (the frame object is level 1) is measured on the text before JSON.parse: parsing
 * costs grow faster than linearly with depth (a 64 KiB frame 32k levels deep takes ~10-15 ms, a flat
 * one ~30 µs), so a too-deep frame is refused without parsing it, its ref found by a top-level scan.
 * Text that is both malformed and too deep is therefore reported as too deep (bad_frame either way).
 */
export function decodeFrame(text: string, maxJsonDepth = DEFAULT_MAX_JSON_DEPTH): Decoded {
  // Bounded here, before anything is acked: every engine must be able to store and serialise it.
  if (jsonDepthExceeds(text, maxJsonDepth)) {
    return {
      ok: false,
      code: 'bad_frame',
      message: `frame nests deeper than ${maxJsonDepth} levels`,
      ref: frameRef(text),
    };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, code: 'bad_frame', message: 'frame is not valid JSON' };
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
 * The ref (cut to 64 characters) a frame refused without parsing (too deep, over the frame budget)
 * is answered with, so the client can still match the refusal to its send. A top-level scan that
 * stops at msg_id: no parse of the rest of the frame.
 */
export function frameRef(text: string): string | undefined {
  const ref = topLevelString(text, 'msg_id');
  return ref === undefined ? undefined : echoableRef(ref);
}
