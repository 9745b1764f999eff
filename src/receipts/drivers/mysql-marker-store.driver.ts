import { DataSource } from 'typeorm';
import { chunks, tuples } from '../../database/transaction';
import { Marker, markerKey, MarkerMove, MarkerStore } from '../marker.store';

const CHUNK = 1000;

/**
 * Markers in `receipt_marker` (migration 1767225600004). Forward-only without locks or reads: every
 * move is one upsert whose update keeps GREATEST(stored, given), so concurrent routers (a partition
 * handover) can apply moves in any order and the result is the same maximum.
 */
export class MysqlMarkerStoreDriver extends MarkerStore {
  constructor(private readonly ds: DataSource) {
    super();
  }

  async read(pairs: { conversationId: string; userId: string }[]): Promise<Marker[]> {
    const found = new Map<string, Marker>();
    for (const part of chunks(pairs, CHUNK)) {
      const rows: {
        conversation_id: string;
        user_id: string;
        delivered_seq: number | string;
        read_seq: number | string;
      }[] = await this.ds.query(
        `SELECT conversation_id, user_id, delivered_seq, read_seq FROM receipt_marker
           WHERE (conversation_id, user_id) IN (${tuples(part.length, 2)})`,
        part.flatMap((p) => [p.conversationId, p.userId]),
      );
      for (const r of rows) found.set(markerKey(r.conversation_id, r.user_id), toMarker(r));
    }
    return pairs.map(
      ({ conversationId, userId }) =>
        found.get(markerKey(conversationId, userId)) ?? { conversationId, userId, delivered: 0, read: 0 },
    );
  }

  async advance(moves: MarkerMove[]): Promise<void> {
    // Sorted, so two routers writing overlapping markers take the row locks in one order.
    const sorted = [...moves].sort((a, b) =>
      markerKey(a.conversationId, a.userId) < markerKey(b.conversationId, b.userId) ? -1 : 1,
    );
    for (const part of chunks(sorted, CHUNK)) {
      await this.ds.query(
        `INSERT INTO receipt_marker (conversation_id, user_id, delivered_seq, read_seq) VALUES ${tuples(part.length, 4)}
         ON DUPLICATE KEY UPDATE
           read_seq = GREATEST(read_seq, VALUES(read_seq)),
           delivered_seq = GREATEST(delivered_seq, VALUES(delivered_seq), read_seq),
           updated_at = CURRENT_TIMESTAMP(3)`,
        part.flatMap((m) => [m.conversationId, m.userId, m.seq, m.kind === 'read' ? m.seq : 0]),
      );
    }
  }

  async list(conversationId: string, limit: number): Promise<Marker[]> {
    const rows: {
      conversation_id: string;
      user_id: string;
      delivered_seq: number | string;
      read_seq: number | string;
    }[] = await this.ds.query(
      `SELECT conversation_id, user_id, delivered_seq, read_seq FROM receipt_marker
         WHERE conversation_id = ? ORDER BY user_id LIMIT ?`,
      [conversationId, Math.floor(limit)],
    );
    return rows.map(toMarker);
  }

  async ping(): Promise<void> {
    await this.ds.query('SELECT 1');
  }
}

function toMarker(r: {
  conversation_id: string;
  user_id: string;
  delivered_seq: number | string;
  read_seq: number | string;
}): Marker {
  return {
    conversationId: r.conversation_id,
    userId: r.user_id,
    delivered: Number(r.delivered_seq),
    read: Number(r.read_seq),
  };
}
