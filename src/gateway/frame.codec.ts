import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import { CLIENT_FRAME_SCHEMAS, FRAME_SCHEMA } from '@relay/protocol';
import { ClientFrame, echoableRef, ErrorCode } from '../protocol/frames';
import { jsonDepthExceeds, topLevelString } from '../protocol/json-depth';

type Decoded =
  { ok: true; frame: ClientFrame } | { ok: false; code: ErrorCode; message: string; ref?: string };

/** MAX_JSON_DEPTH's default: deep enough for any sane body, shallow enough for every engine to store. */
const DEFAULT_MAX_JSON_DEPTH = 64;

// The schemas are packages/protocol's; each compiled once, on first use (compiling them all took a
// noticeable share of a gateway's boot): validation runs for every inbound frame.
const ajv = new Ajv({ allErrors: false, strict: false });
let envelopeValidator: ValidateFunction | undefined;
const validateEnvelope = (): ValidateFunction => (envelopeValidator ??= ajv.compile(FRAME_SCHEMA));
const SCHEMAS = new Map<string, object>(Object.entries(CLIENT_FRAME_SCHEMAS));
const compiled = new Map<string, ValidateFunction>();
/** The validator of a known frame type; undefined for a type without a schema (`unknown_type`). */
function validatorOf(type: string): ValidateFunction | undefined {
  let v = compiled.get(type);
  if (v) return v;
  const schema = SCHEMAS.get(type);
  if (!schema) return undefined;
  compiled.set(type, (v = ajv.compile(schema)));
  return v;
}

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
  const envelope = validateEnvelope();
  if (!envelope(raw)) {
    return { ok: false, code: 'bad_frame', message: describe(envelope.errors) };
  }
  const frame = raw as { type: string; msg_id?: string };
  const ref = refOf(raw);
  const validate = validatorOf(frame.type);
  if (validate === undefined) {
    return {
      ok: false,
      code: 'unknown_type',
      message: `unknown frame type "${frame.type.slice(0, 32)}"`,
      ref,
    };
  }
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
