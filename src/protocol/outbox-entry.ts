import type { ReceiptPayload } from '@relay/protocol';
import { Envelope } from './envelope';

export type { ReceiptPayload } from '@relay/protocol';

/**
 * A receipt as the outbox stores and the gateway sends it: `{"type":"receipt","msg_id":<cursor>,
 * "payload":<payload>}`. `id` is the receipt's own id (the bus record's), the idempotency key of its
 * deliveries like a message id.
 */
export interface ReceiptEnvelope {
  type: 'receipt';
  id: string;
  conversation_id: string;
  payload: ReceiptPayload;
}

/**
 * What one outbox delivery carries: a message (its envelope, no `type` field) or a receipt. Both
 * share the recipient's delivery seq, so replay returns them in one order.
 */
export type OutboxEntry = Envelope | ReceiptEnvelope;

export function isReceiptEntry(e: OutboxEntry): e is ReceiptEnvelope {
  return (e as Partial<ReceiptEnvelope>).type === 'receipt';
}

/** The JSON of the frame payload of an entry (computed once per node, shared by every recipient). */
export function entryPayloadJson(entry: OutboxEntry): string {
  return JSON.stringify(isReceiptEntry(entry) ? entry.payload : entry);
}

/** The frame a connection writes for one delivery: `message` or (v1.1) `receipt`. */
export function deliveryFrame(
  cursor: string,
  entry: OutboxEntry,
  payloadJson = entryPayloadJson(entry),
): string {
  const type = isReceiptEntry(entry) ? 'receipt' : 'message';
  return `{"type":"${type}","msg_id":"${cursor}","payload":${payloadJson}}`;
}

/** The entry's time for latency metrics (a message's ts, a receipt's). */
export function entryTs(e: OutboxEntry): number {
  return isReceiptEntry(e) ? e.payload.ts : e.ts;
}
