import type { ServerErrorCode } from './protocol.js';

/** Codes produced by the client itself (never sent by the server). */
export type ClientErrorCode =
  /** close() was called, or the client gave up for good. */
  | 'closed'
  /** No ack within sendTimeoutMs. The message may still have been accepted: see README. */
  | 'timeout'
  /** More than maxQueue sends were waiting for an ack. */
  | 'queue_full'
  /** The server refused the credentials (close 4001 / HTTP 401). */
  | 'unauthorized'
  /** A bad argument to send(); nothing was sent. */
  | 'invalid_argument'
  /** The WebSocket constructor threw (e.g. a URL the implementation rejects); the client retries with back-off. */
  | 'connection_error'
  /** getToken() threw or rejected; the client keeps retrying with back-off. */
  | 'token_error'
  /** The cursor storage failed to load or save. */
  | 'storage_error'
  /** An event listener threw; the event still counts as delivered. */
  | 'handler_error';

/** `(string & {})` keeps autocompletion for the known codes while allowing codes a newer server adds. */
export type RelayErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

/** Every error the SDK reports, by rejecting a promise or through the `error` event. */
export class RelayError extends Error {
  override readonly name = 'RelayError';

  constructor(
    readonly code: RelayErrorCode,
    message: string,
    /** The client ref of the send this error belongs to, when there is one. Reuse it to retry safely. */
    readonly ref?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The message of an Error, or the value itself, for an error's text. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
