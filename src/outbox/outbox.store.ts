import { OutboxEntry } from '../protocol/outbox-entry';
import { RetentionState } from './cursor';

export interface NewDelivery {
  userId: string;
  /** A message (its `seq` is assigned by the store) or a receipt. */
  envelope: OutboxEntry;
  /**
   * `JSON.stringify(envelope)`, when the caller already has it (the router checks every envelope
   * serialises); a driver may build the stored entry's JSON from it instead of serialising again.
   */
  json?: string;
}

export interface StoredDelivery {
  userId: string;
  seq: number;
  /** As stored: a message carries its conversation order number in `seq`. */
  envelope: OutboxEntry;
  /**
   * The stored envelope's JSON, when the driver serialised it anyway: set (by the memory driver) on
   * the deliveries of the call that stored the entry, so the local gateway need not serialise it again.
   */
  json?: string;
}

/** A cheap look at the outbox's size for gauges (not exact on every driver: see each field). */
export interface OutboxStats {
  /** Deliveries held (expired ones included until purged); SQL drivers may estimate it. */
  rows: number;
  /** Age of the oldest delivery held, in ms; null when the outbox is empty. */
  oldestAgeMs: number | null;
}

/**
 * The per-user durable log of deliveries: the source of truth for what a user is owed.
 *
 * Contract every driver keeps:
 * - `append` is atomic per call and idempotent per (userId, envelope.id): re-appending a delivery
 *   returns its original seq and writes nothing.
 * - seqs are gapless per user and allocated in commit order: when seq N of a user is visible,
 *   every seq < N of that user is visible too. Deliveries in one call get seqs in input order.
 * - reads return only deliveries whose `expires_at` is in the future, in seq order.
 * - Each entry is stored once however many recipients it has (bytes written do not scale with
 *   payload x members); deliveries are small rows pointing at it.
 * - Messages (entries that are not receipts) get a per-conversation order number, `envelope.seq`,
 *   allocated with the same rules as user seqs: gapless per conversation, in input order within a
 *   call, in commit order across calls, and kept by an idempotent re-append (a redelivered message
 *   keeps its first number, whatever the caller passed). Receipts get none.
 */
export abstract class OutboxStore {
  /** Storage generation; changes when the store is wiped, which invalidates every cursor. */
  abstract epoch(): string;
  /** Returns one stored delivery per input, in input order (existing ones for duplicates). */
  abstract append(deliveries: NewDelivery[]): Promise<StoredDelivery[]>;
  abstract readAfter(userId: string, afterSeq: number, limit: number): Promise<StoredDelivery[]>;
  abstract retention(userId: string, afterSeq: number): Promise<RetentionState>;
  /** Highest message order number per conversation (0, or absent, when it has none). */
  abstract conversationHeads(conversationIds: string[]): Promise<Map<string, number>>;
  /**
   * Distinct senders of the retained messages of a conversation with afterSeq < seq <= uptoSeq,
   * looking at no more than the newest `limit` messages of that range (a bounded scan).
   */
  abstract senders(
    conversationId: string,
    afterSeq: number,
    uptoSeq: number,
    limit: number,
  ): Promise<string[]>;
  /** Deletes up to `limit` expired deliveries (and entries no delivery needs); returns how many went. */
  abstract purgeExpired(limit: number): Promise<number>;
  /** Size gauges; must stay cheap (the router calls it on every purge tick). */
  abstract stats(): Promise<OutboxStats>;
  abstract ping(): Promise<void>;
}
