import { POLL_ERROR_STATUS, type PollErrorCode } from '@relay/protocol';

/** A long-polling request refused with an HTTP status and a `{code, message}` body. */
export class PollError extends Error {
  readonly status: number;

  constructor(
    readonly code: PollErrorCode,
    message: string,
  ) {
    super(message);
    this.status = POLL_ERROR_STATUS[code];
  }
}
