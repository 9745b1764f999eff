import { OutboxEntry } from '../protocol/outbox-entry';

/**
 * What the router pushes to one gateway node for one routed batch. Envelopes appear once per node
 * however many of its users receive them; deliveries point into `envelopes` by index.
 */
export interface PushBatch {
  epoch: string;
  /** Messages and receipts (src/protocol/outbox-entry.ts). */
  envelopes: OutboxEntry[];
  /** u: user id, s: the user's delivery seq, e: index into envelopes. */
  deliveries: { u: string; s: number; e: number }[];
  /** Per envelope (same index), the router span's W3C traceparent; only while tracing is on (not schema-checked). */
  traces?: (string | null)[];
  /** An earlier push to this node failed: every connection must catch up from the outbox. */
  resync?: boolean;
}

export interface NodeSubscriber {
  onBatch(batch: PushBatch): void;
  /** The channel may have dropped pushes (e.g. reconnect): every connection must refill from the outbox. */
  onResync(): void;
}

/** Per-node push channels: a fast path only; the outbox stays the source of truth. */
export abstract class NodeChannel {
  /** One publish per node, all nodes in one round trip. */
  abstract publish(batches: Map<string, PushBatch>): Promise<void>;
  abstract subscribe(node: string, subscriber: NodeSubscriber): Promise<void>;
  abstract unsubscribe(): Promise<void>;
  abstract ping(): Promise<void>;
}
