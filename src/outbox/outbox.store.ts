import { Envelope } from '../protocol/envelope';
import { RetentionState } from './cursor';

export interface NewDelivery {
  userId: string;
  envelope: Envelope;
}

export interface StoredDelivery {
  userId: string;
  seq: number;
  envelope: Envelope;
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
 */
export abstract class OutboxStore {
  /** Storage generation; changes when the store is wiped, which invalidates every cursor. */
  abstract epoch(): string;
  /** Returns one stored delivery per input, in input order (existing ones for duplicates). */
  abstract append(deliveries: NewDelivery[]): Promise<StoredDelivery[]>;
  abstract readAfter(userId: string, afterSeq: number, limit: number): Promise<StoredDelivery[]>;
  abstract retention(userId: string, afterSeq: number): Promise<RetentionState>;
  /** Deletes up to `limit` expired deliveries; returns how many went. */
  abstract purgeExpired(limit: number): Promise<number>;
  /** Size gauges; must stay cheap (the router calls it on every purge tick). */
  abstract stats(): Promise<OutboxStats>;
  abstract ping(): Promise<void>;
}
