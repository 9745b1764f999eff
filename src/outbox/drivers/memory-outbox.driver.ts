import { randomBytes } from 'node:crypto';
import { RetentionState } from '../cursor';
import { NewDelivery, OutboxStats, OutboxStore, StoredDelivery } from '../outbox.store';

interface Row extends StoredDelivery {
  expiresAt: number;
}

interface UserLog {
  head: number;
  rows: Row[]; // ascending seq; expired rows are cut from the front
  byMessage: Map<string, number>;
}

/** In-process outbox: one JS thread makes every append atomic, so seqs are trivially gapless. */
export class MemoryOutboxDriver extends OutboxStore {
  private readonly generation = randomBytes(4).toString('hex');
  private readonly users = new Map<string, UserLog>();

  constructor(
    private readonly retentionMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
  }

  epoch(): string {
    return this.generation;
  }

  async append(deliveries: NewDelivery[]): Promise<StoredDelivery[]> {
    const expiresAt = this.now() + this.retentionMs;
    return deliveries.map(({ userId, envelope }) => {
      let log = this.users.get(userId);
      if (!log) {
        log = { head: 0, rows: [], byMessage: new Map() };
        this.users.set(userId, log);
      }
      const existing = log.byMessage.get(envelope.id);
      if (existing !== undefined) return { userId, seq: existing, envelope };
      const seq = ++log.head;
      log.rows.push({ userId, seq, envelope, expiresAt });
      log.byMessage.set(envelope.id, seq);
      return { userId, seq, envelope };
    });
  }

  async readAfter(userId: string, afterSeq: number, limit: number): Promise<StoredDelivery[]> {
    const log = this.users.get(userId);
    if (!log) return [];
    const now = this.now();
    const start = lowerBound(log.rows, afterSeq + 1);
    const out: StoredDelivery[] = [];
    for (let i = start; i < log.rows.length && out.length < limit; i++) {
      const r = log.rows[i];
      if (r.expiresAt > now) out.push({ userId: r.userId, seq: r.seq, envelope: r.envelope });
    }
    return out;
  }

  async retention(userId: string, afterSeq: number): Promise<RetentionState> {
    const log = this.users.get(userId);
    if (!log) return { head: 0, firstRetainedAfter: null };
    const now = this.now();
    for (let i = lowerBound(log.rows, afterSeq + 1); i < log.rows.length; i++) {
      if (log.rows[i].expiresAt > now) return { head: log.head, firstRetainedAfter: log.rows[i].seq };
    }
    return { head: log.head, firstRetainedAfter: null };
  }

  async purgeExpired(limit: number): Promise<number> {
    const now = this.now();
    let purged = 0;
    for (const log of this.users.values()) {
      while (purged < limit && log.rows.length > 0 && log.rows[0].expiresAt <= now) {
        const row = log.rows.shift()!;
        log.byMessage.delete(row.envelope.id);
        purged++;
      }
      // The log object (and its head) stays even when empty so cursors remain comparable.
      if (purged >= limit) break;
    }
    return purged;
  }

  async stats(): Promise<OutboxStats> {
    let rows = 0;
    let oldest = Infinity;
    for (const log of this.users.values()) {
      rows += log.rows.length;
      // expiresAt does not decrease along a user's log: the first row is that user's oldest.
      if (log.rows.length > 0) oldest = Math.min(oldest, log.rows[0].expiresAt - this.retentionMs);
    }
    return { rows, oldestAgeMs: rows === 0 ? null : Math.max(0, this.now() - oldest) };
  }

  async ping(): Promise<void> {}
}

function lowerBound(rows: Row[], seq: number): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (rows[mid].seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
