import type { MessagePayload } from '@relay/protocol';

/**
 * The message as every recipient sees it: the `payload` of a `message` frame (packages/protocol),
 * stored verbatim in the outbox.
 */
export type Envelope = MessagePayload;

/** What the gateway writes to the bus: the envelope plus the sender's client ref (for tracing). */
export interface IngressMessage extends Envelope {
  /** Bus record kind (src/protocol/bus-record.ts): absent on messages from older gateways. */
  kind?: 'message';
  ref: string;
  /**
   * W3C traceparent of the gateway's ingress span; only while tracing is on (src/common/tracing.ts).
   * Not in the wire schema: readers check it is a string, a bad one costs the trace, not the message.
   */
  trace?: string;
}
