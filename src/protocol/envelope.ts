/** The message as every recipient sees it: the `payload` of a `message` frame, stored verbatim in the outbox. */
export interface Envelope {
  id: string;
  conversation_id: string;
  from: string;
  ts: number;
  body: unknown;
}

/** What the gateway writes to the bus: the envelope plus the sender's client ref (for tracing). */
export interface IngressMessage extends Envelope {
  ref: string;
}
