import { Injectable } from '@nestjs/common';
import { Config } from '../config/config.module';
import { NewDelivery, OutboxStore, StoredDelivery } from '../outbox/outbox.store';
import { ReceiptRecord } from '../protocol/bus-record';
import { ReceiptEnvelope } from '../protocol/outbox-entry';
import { markerKey, MarkerMove, MarkerStore } from '../receipts/marker.store';
import { RoutingError } from './failure-kind';

/** Most messages of a large conversation scanned for the senders a receipt covers. */
export const SENDER_SCAN_LIMIT = 1000;

/**
 * v1.1 receipts on the router: a batch's receipt records -> forward-only markers -> outbox entries
 * for the members who see them. Runs after the batch's messages are in the outbox, so a receipt's
 * deliveries come after the messages it covers in every recipient's log.
 *
 * Invariants:
 * - Coalesced: per (conversation, member, kind) only the highest seq of the batch counts.
 * - A marker never points past the conversation's head (a client's seq above it is clamped) and
 *   never moves back: a receipt that does not raise the stored marker is dropped, and the store
 *   keeps GREATEST on every write.
 * - Write-ahead and redelivery: the receipt entries are appended (idempotent by the record's id)
 *   before the markers move. A crash between the two redelivers the batch: the markers have not
 *   moved, so the same receipts (same ids, same clamp: the partition's head cannot move meanwhile)
 *   are appended again and keep their seqs. A crash after both: the markers already moved, the
 *   receipts are dropped as not advancing, and their deliveries are already in the outbox.
 * - Fan-out: every member up to `fanoutMaxMembers` (the marker's owner included, for their other
 *   devices); above, only the senders of the messages the marker move covers (the newest
 *   SENDER_SCAN_LIMIT of them, one bounded index range per receipt). The marker moves even when
 *   nobody is to be told (e.g. a member reading only their own messages).
 */
@Injectable()
export class ReceiptRouting {
  constructor(
    private readonly outbox: OutboxStore,
    private readonly markers: MarkerStore,
    private readonly config: Config,
  ) {}

  /** Appends the receipts of a batch; returns their stored deliveries (to push with the messages). */
  async route(records: ReceiptRecord[], members: Map<string, string[] | null>): Promise<StoredDelivery[]> {
    const latest = new Map<string, ReceiptRecord>();
    for (const r of records) {
      const users = members.get(r.conversation_id);
      if (!users || !users.includes(r.user_id)) continue; // left the conversation (or it went) meanwhile
      const key = `${r.marker}\u0000${markerKey(r.conversation_id, r.user_id)}`;
      const seen = latest.get(key);
      if (!seen || r.seq > seen.seq) latest.set(key, r);
    }
    if (latest.size === 0) return [];
    const receipts = [...latest.values()];

    let current: Awaited<ReturnType<MarkerStore['read']>>;
    let heads: Map<string, number>;
    try {
      [current, heads] = await Promise.all([
        this.markers.read(receipts.map((r) => ({ conversationId: r.conversation_id, userId: r.user_id }))),
        this.outbox.conversationHeads([...new Set(receipts.map((r) => r.conversation_id))]),
      ]);
    } catch (err) {
      throw new RoutingError('outbox', err);
    }

    const deliveries: NewDelivery[] = [];
    const moves: MarkerMove[] = [];
    for (let i = 0; i < receipts.length; i++) {
      const r = receipts[i];
      const marker = current[i];
      const was = r.marker === 'read' ? marker.read : marker.delivered;
      const seq = Math.min(r.seq, heads.get(r.conversation_id) ?? 0);
      if (seq <= was) continue;
      const users = members.get(r.conversation_id)!;
      const recipients = await this.recipients(r, users, was, seq);
      const entry: ReceiptEnvelope = {
        type: 'receipt',
        id: r.id,
        conversation_id: r.conversation_id,
        payload: { conversation_id: r.conversation_id, user_id: r.user_id, kind: r.marker, seq, ts: r.ts },
      };
      for (const userId of recipients) deliveries.push({ userId, envelope: entry });
      moves.push({ conversationId: r.conversation_id, userId: r.user_id, kind: r.marker, seq });
    }
    if (moves.length === 0) return [];
    let stored: StoredDelivery[];
    try {
      stored = deliveries.length > 0 ? await this.outbox.append(deliveries) : [];
      await this.markers.advance(moves);
    } catch (err) {
      throw new RoutingError('outbox', err);
    }
    return stored;
  }

  private async recipients(r: ReceiptRecord, users: string[], was: number, seq: number): Promise<string[]> {
    if (users.length <= this.config.receipts.fanoutMaxMembers) return users;
    let senders: string[];
    try {
      senders = await this.outbox.senders(r.conversation_id, was, seq, SENDER_SCAN_LIMIT);
    } catch (err) {
      throw new RoutingError('outbox', err);
    }
    const members = new Set(users);
    return senders.filter((s) => members.has(s));
  }
}
