/** Wire protocol v1 (docs/protocol.md). */

/** User and conversation ids: frames, tokens (`sub`), dev auth and the directory API all use it. */
export const ID_PATTERN_SOURCE = '^[A-Za-z0-9_.:@-]{1,128}$';
export const ID_PATTERN = new RegExp(ID_PATTERN_SOURCE);
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

export const CLOSE = {
  unauthorized: 4001,
  handshakeTimeout: 4008,
  /** Kept sending frames over the per-connection budget after `rate_limited`. */
  flooding: 4029,
  tooLarge: 1009,
  internal: 1011,
  draining: 1012,
  /** More than MAX_BUFFERED_BYTES unsent to this client. */
  slowConsumer: 1013,
} as const;

export type ClientFrame =
  | { type: 'hello'; payload?: { last_msg_id?: string } }
  | { type: 'send'; msg_id: string; payload: { conversation_id: string; body: unknown } }
  | { type: 'confirm'; msg_id: string }
  | { type: 'ping' };

/** An `error` frame echoes at most this many characters of the frame's msg_id (protocol limit). */
export const MAX_ECHOED_REF = 64;

/** The part of a client ref an error may echo: a hostile ref must not size our output. */
export function echoableRef(ref: string): string {
  return ref.length > MAX_ECHOED_REF ? ref.slice(0, MAX_ECHOED_REF) : ref;
}

export function errorFrame(code: ErrorCode, message: string, ref?: string): string {
  return JSON.stringify(
    ref === undefined
      ? { type: 'error', payload: { code, message } }
      : { type: 'error', msg_id: echoableRef(ref), payload: { code, message } },
  );
}
