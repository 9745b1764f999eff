import type { MessagePayload } from '@relay/protocol';

/**
 * The message as every recipient sees it: the `payload` of a `message` frame (packages/protocol),
 * stored verbatim in the outbox.
 */
export type Envelope = MessagePayload;

/** What the gateway writes to the bus: the envelope plus the sender's client ref (for tracing). */
export interface IngressMessage extends Envelope {
  ref: string;
}
