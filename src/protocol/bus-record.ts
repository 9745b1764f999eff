import { IngressMessage } from './envelope';

/**
 * Bus records (docs: /work/coord/BUS-RECORDS.md, docs/architecture.md "Bus records"). Every record on
 * the ingress topic is one JSON object; `kind` discriminates: absent or "message" is an
 * IngressMessage, "receipt" a member's marker. Records of a kind a router does not know are skipped
 * (committed past, counted, logged once), so a newer writer never blocks an older router.
 */

/** A member's delivered/read marker, keyed (partitioned) by conversation like its messages. */
export interface ReceiptRecord {
  /** The event stream's record version (src/protocol/stream-records.ts); readers tolerate its absence. */
  schema_version?: number;
  kind: 'receipt';
  /** The receipt's id (a ULID from the gateway): the idempotency key of its outbox deliveries. */
  id: string;
  conversation_id: string;
  user_id: string;
  marker: 'delivered' | 'read';
  /** Conversation order number the marker moves to (MessagePayload.seq). */
  seq: number;
  ts: number;
}

/**
 * A record of a kind this version does not know (a newer writer's). By convention every record
 * names its id and conversation (the partition key), but only `kind` is checked for these: a field
 * a writer left out is absent at run time (logs print it as it is).
 */
export interface ForeignRecord {
  kind: string;
  id: string;
  conversation_id: string;
}

/** What gateways publish. */
export type PublishedRecord = IngressMessage | ReceiptRecord;

/** What routers consume. */
export type BusRecord = PublishedRecord | ForeignRecord;

export function isMessageRecord(r: BusRecord): r is IngressMessage {
  return r.kind === undefined || r.kind === 'message';
}

export function isReceiptRecord(r: BusRecord): r is ReceiptRecord {
  return r.kind === 'receipt';
}

/** The record's kind for logs and metrics (bounded: a foreign kind is cut). */
export function recordKind(r: BusRecord): string {
  const kind = r.kind ?? 'message';
  return kind.length > 32 ? `${kind.slice(0, 32)}...` : kind;
}
