/**
 * Wire protocol v1 (docs/protocol.md), defined in packages/protocol; this file adds what the server
 * does with it. Its re-exports keep the gateway's imports short.
 */
import { MAX_ECHOED_REF } from '@relay/protocol';
import type { ErrorCode } from '@relay/protocol';

export { CLOSE, ERROR_CODES, ID_PATTERN, ID_PATTERN_SOURCE, MAX_ECHOED_REF } from '@relay/protocol';
export type { ClientFrame, ErrorCode } from '@relay/protocol';

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
