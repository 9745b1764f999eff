import { BusRecord, PublishedRecord as RoutedRecord, ReceiptRecord } from '../protocol/bus-record';
import { IngressMessage } from '../protocol/envelope';
import { MembershipRecord, PresenceRecord, RawStreamRecord } from '../protocol/stream-records';

export type { BusRecord } from '../protocol/bus-record';

/** A run of messages from one partition, in partition (= per-conversation) order. */
export interface BusBatch {
  partition: number;
  /** Records of every kind (src/protocol/bus-record.ts); the router skips kinds it does not know. */
  messages: BusRecord[];
}

export type BatchHandler = (batch: BusBatch) => Promise<void>;

/** Records of the event stream other than messages (routers skip them); see publishRecord. */
export type OtherStreamRecord = MembershipRecord | PresenceRecord;
/** Anything a driver writes to the topic. */
export type PublishedRecord = RoutedRecord | OtherStreamRecord;

/** A run of event-stream records (every kind, as JSON objects) from one partition, in order. */
export interface RecordBatch {
  partition: number;
  records: RawStreamRecord[];
}

/** A consumer of its own group (see consumeAsGroup). */
export interface GroupSubscription {
  /** Lets the batch in progress finish and commit, then leaves the group. */
  stop(): Promise<void>;
}

/** A quarantined record, as the dead-letter topic (Kafka) or store (memory) keeps it. */
export interface DeadLetter {
  /** The record; the raw record value (or null) when it was not a bus record at all. */
  message: BusRecord | string | null;
  /** Why it was quarantined: `<kind>: <error>` from the router, `malformed` from the Kafka driver. */
  reason: string;
  /** Ingress partition it came from. */
  partition: number;
  /** When it was quarantined (ms since the epoch). */
  at: number;
}

/**
 * The durable ordered backbone between gateways and routers, with Kafka's semantics:
 * - `publish` resolves only once the message is durable (for Kafka: acks=all); messages with the
 *   same conversation_id land in one partition in publish order.
 * - `consume` delivers batches per partition in order; a batch's offsets are committed only after
 *   its handler resolved. A handler that throws, or a crash before commit, means the batch comes
 *   again (at-least-once): handlers must be idempotent.
 */
export abstract class MessageBus {
  abstract publish(message: IngressMessage): Promise<void>;
  /**
   * Writes a non-message record of the event stream (membership change, presence), same durability
   * and same partitioning as `publish` (keyed by conversation: ordered with its messages).
   */
  abstract publishRecord(record: OtherStreamRecord): Promise<void>;
  /** v1.1: a receipt marker record, with publish's guarantees (same partition as its conversation's messages). */
  abstract publishReceipt(record: ReceiptRecord): Promise<void>;
  /**
   * The router's consumption (group KAFKA_GROUP_ID): messages, receipts and membership changes (the
   * router drops its cached member list). Stream-only kinds (presence) are skipped by the driver; a kind this version does not know reaches the
   * router, which skips it (src/protocol/bus-record.ts).
   */
  abstract consume(handler: BatchHandler): Promise<void>;
  /**
   * Consumes every record of the topic with its own consumer group, independently of the router and
   * of other groups (its own offsets: a slow or stopped group delays only itself), with the same
   * commit-after-handler and redelivery rules as `consume`. Records that are not JSON objects are
   * skipped. A new group starts at the oldest retained record. Stopped by the subscription or by close.
   */
  abstract consumeAsGroup(
    groupId: string,
    handler: (batch: RecordBatch) => Promise<void>,
  ): Promise<GroupSubscription>;
  /** Lets the batch in progress finish and commit, then leaves the consumer group. */
  abstract stopConsuming(): Promise<void>;
  /**
   * Quarantines a message the consumer gives up on (see the router's quarantine rule): resolves only
   * once the dead letter is durable (Kafka: acks=all on the dead-letter topic). A failure must be
   * treated as an outage: the batch is not committed and comes again.
   */
  abstract deadLetter(message: BusRecord, reason: string, partition: number): Promise<void>;
  abstract ping(): Promise<void>;
  abstract close(): Promise<void>;
}

/** Stable key -> partition mapping of the memory driver (Kafka keys with its own murmur2 partitioner). */
export function partitionFor(key: string, partitions: number): number {
  let h = 0;
  for (let i = 0; i < key.length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
  return (h >>> 0) % partitions;
}
