import Ajv from 'ajv';
import { BusRecord } from './bus-record';
import { IngressMessage } from './envelope';

/**
 * JSON schemas of relay's internal wire formats: whatever a node reads back from a backend (bus
 * records, node-channel push batches, dedupe records) is checked against its schema before use.
 * Each is compiled once, by the module that reads the format. Unknown fields are allowed, as in the
 * client protocol (whose schemas are in packages/protocol): a newer node may add some.
 */
const ajv = new Ajv({ allErrors: false });

/**
 * A check for a format whose TypeScript type is T (the schema's unit test keeps them in step),
 * compiled on its first use: compiling generates code, and a node that never reads a format (a
 * gateway never reads bus records) should not pay for it at boot.
 */
export function compileWireSchema<T>(schema: object): (v: unknown) => v is T {
  let compiled: ((v: unknown) => v is T) | undefined;
  return (v: unknown): v is T => (compiled ??= ajv.compile<T>(schema))(v);
}

/** A bus record (IngressMessage, src/protocol/envelope.ts). `body` may be any JSON value. */
export const INGRESS_MESSAGE_SCHEMA = {
  type: 'object',
  required: ['id', 'conversation_id', 'from', 'ts', 'ref'],
  properties: {
    id: { type: 'string' },
    conversation_id: { type: 'string' },
    from: { type: 'string' },
    ts: { type: 'number' },
    ref: { type: 'string' },
  },
} as const;

/** A receipt marker record (ReceiptRecord, src/protocol/bus-record.ts). */
export const RECEIPT_RECORD_SCHEMA = {
  type: 'object',
  required: ['kind', 'id', 'conversation_id', 'user_id', 'marker', 'seq', 'ts'],
  properties: {
    kind: { const: 'receipt' },
    id: { type: 'string' },
    conversation_id: { type: 'string' },
    user_id: { type: 'string' },
    marker: { enum: ['delivered', 'read'] },
    seq: { type: 'integer', minimum: 1 },
    ts: { type: 'number' },
  },
} as const;

/**
 * What the router pushes to one gateway node (PushBatch, src/session/node-channel.ts). The index
 * range of `e` is not expressible here: readers also check deliveriesInRange.
 */
export const PUSH_BATCH_SCHEMA = {
  type: 'object',
  required: ['epoch', 'envelopes', 'deliveries'],
  properties: {
    epoch: { type: 'string' },
    envelopes: { type: 'array', items: { type: 'object' } },
    deliveries: {
      type: 'array',
      items: {
        type: 'object',
        required: ['u', 's', 'e'],
        properties: { u: { type: 'string' }, s: { type: 'number' }, e: { type: 'integer', minimum: 0 } },
      },
    },
    resync: { type: 'boolean' },
  },
} as const;

/** A typing/presence batch between gateways (EphemeralBatch, src/session/node-channel.ts). */
export const EPHEMERAL_BATCH_SCHEMA = {
  type: 'object',
  required: ['kind'],
  properties: {
    kind: { const: 'ephemeral' },
    typing: {
      type: 'array',
      items: {
        type: 'object',
        required: ['c', 'u', 's', 'x', 't'],
        properties: {
          c: { type: 'string' },
          u: { type: 'string' },
          s: { enum: ['start', 'stop'] },
          x: { type: 'integer', minimum: 0 },
          t: { type: 'array', items: { type: 'string' } },
        },
      },
    },
    presence: {
      type: 'array',
      items: {
        type: 'object',
        required: ['u', 'on', 'v'],
        properties: { u: { type: 'string' }, on: { type: 'boolean' }, v: { type: 'number' } },
      },
    },
  },
} as const;

/** A send's reserved ack in the dedupe store (AckRecord, src/session/send-dedupe.ts). */
export const ACK_RECORD_SCHEMA = {
  type: 'object',
  required: ['id', 'ts', 'conversation_id'],
  properties: {
    id: { type: 'string' },
    ts: { type: 'number' },
    conversation_id: { type: 'string' },
  },
} as const;

const validateIngressMessage = compileWireSchema<IngressMessage>(INGRESS_MESSAGE_SCHEMA);

export function isIngressMessage(v: unknown): v is IngressMessage {
  return validateIngressMessage(v);
}

const validateReceiptRecord = compileWireSchema(RECEIPT_RECORD_SCHEMA);

/**
 * A bus record this node can hand to a router: a valid message or receipt, or an object of a kind it
 * does not know (the router skips those). A known kind that fails its schema is malformed.
 */
export function isBusRecord(v: unknown): v is BusRecord {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const kind = (v as { kind?: unknown }).kind;
  if (kind === undefined || kind === 'message') return validateIngressMessage(v);
  if (kind === 'receipt') return validateReceiptRecord(v);
  // An unknown kind needs only its `kind`: a newer writer's record must be skipped, never dead-lettered.
  const { id, conversation_id } = v as { id?: unknown; conversation_id?: unknown };
  const optionalString = (x: unknown) => x === undefined || typeof x === 'string';
  return typeof kind === 'string' && kind.length > 0 && optionalString(id) && optionalString(conversation_id);
}

/** What PUSH_BATCH_SCHEMA cannot say: every delivery points at an envelope of its batch. */
export function deliveriesInRange(batch: { envelopes: unknown[]; deliveries: { e: number }[] }): boolean {
  const n = batch.envelopes.length;
  for (const d of batch.deliveries) if (d.e >= n) return false;
  return true;
}
