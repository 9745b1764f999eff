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
  /**
   * Per envelope (same index), its JSON when the outbox already serialised it. In-process channels
   * only (the memory channel hands the object over as is); never sent between processes.
   */
  json?: (string | undefined)[];
  /** An earlier push to this node failed: every connection must catch up from the outbox. */
  resync?: boolean;
}

export interface NodeSubscriber {
  onBatch(batch: PushBatch): void;
  /** The channel may have dropped pushes (e.g. reconnect): every connection must refill from the outbox. */
  onResync(): void;
}

/**
 * v1.1 live features: what a gateway sends other gateways for typing and presence, on the same node
 * channel as push batches (`kind` tells them apart). Ephemeral: never stored, at most once, lost
 * when a subscriber is down (nothing resyncs it).
 */
export interface EphemeralBatch {
  kind: 'ephemeral';
  /** c: conversation, u: typer, s: state, x: expires_in_ms, t: the recipients on the target node. */
  typing?: { c: string; u: string; s: 'start' | 'stop'; x: number; t: string[] }[];
  /** u: user, on: online, v: the user's presence version (higher wins; older changes are dropped). */
  presence?: { u: string; on: boolean; v: number }[];
}

export type EphemeralListener = (batch: EphemeralBatch) => void;

/** Per-node push channels: a fast path only; the outbox stays the source of truth. */
export abstract class NodeChannel {
  private ephemeralListener: EphemeralListener | null = null;

  /** One publish per node, all nodes in one round trip. */
  abstract publish(batches: Map<string, PushBatch>): Promise<void>;
  /**
   * Ephemeral batches, one per node, all nodes in one round trip; best effort. Every driver carries
   * them; the default only serves test doubles that never publish them.
   */
  publishEphemeral(batches: Map<string, EphemeralBatch>): Promise<void> {
    return Promise.reject(new Error(`this channel cannot carry ephemeral batches (${batches.size} nodes)`));
  }

  /** Where ephemeral batches for this node go once subscribe() ran (one listener; a later one replaces it). */
  listenEphemeral(listener: EphemeralListener | null): void {
    this.ephemeralListener = listener;
  }

  /** Drivers hand each ephemeral batch for the subscribed node here; a throwing listener is the driver's to contain. */
  protected deliverEphemeral(batch: EphemeralBatch): void {
    this.ephemeralListener?.(batch);
  }

  /**
   * The one node this channel can reach, when it cannot reach any other (the in-process channel of the
   * embedded engine, once subscribed): the router then addresses every delivery to it without a
   * session lookup, and the gateway skips users with no connection. Null for channels between
   * processes, where the session map says which nodes hold a user's connections.
   */
  singleNode(): string | null {
    return null;
  }

  abstract subscribe(node: string, subscriber: NodeSubscriber): Promise<void>;
  abstract unsubscribe(): Promise<void>;
  abstract ping(): Promise<void>;
}
