import Ajv, { ErrorObject } from 'ajv';
import { ClientFrame, ErrorCode } from '../protocol/frames';

type Decoded =
  { ok: true; frame: ClientFrame } | { ok: false; code: ErrorCode; message: string; ref?: string };

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
        properties: { conversation_id: { type: 'string', minLength: 1, maxLength: 128 } },
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

/** Parses and validates one text frame. Never throws: bad input becomes an error code for the client. */
export function decodeFrame(text: string): Decoded {
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
  const ref = typeof frame.msg_id === 'string' ? frame.msg_id : undefined;
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
