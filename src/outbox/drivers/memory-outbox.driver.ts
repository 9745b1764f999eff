import { randomBytes } from 'node:crypto';
import { isReceiptEntry, OutboxEntry } from '../../protocol/outbox-entry';
import { RetentionState } from '../cursor';
import { NewDelivery, OutboxStats, OutboxStore, StoredDelivery } from '../outbox.store';

interface Row {
  seq: number;
  entry: Entry;
  expiresAt: number;
}

interface UserLog {
  head: number;
  rows: Row[]; // ascending seq; expired and evicted rows are cut from the front
  byMessage: Map<string, number>;
  /** Sum of the rows' entry sizes. */
  bytes: number;
}

/** One stored entry, shared by all its deliveries (`refs` of them still held). */
interface Entry {
  envelope: OutboxEntry;
  expiresAt: number;
  refs: number;
  /** Its JSON length, counted against each recipient's byte bound. */
  bytes: number;
}

/** Per-user bounds of the embedded outbox: the heap holds every retained delivery. */
export interface MemoryOutboxLimits {
  /** Deliveries kept per user; the oldest go beyond it. */
  maxPerUser: number;
  /** Bytes (envelope JSON) kept per user; the oldest go beyond it (the newest always stays). */
  maxBytesPerUser: number;
}

const UNBOUNDED: MemoryOutboxLimits = { maxPerUser: Infinity, maxBytesPerUser: Infinity };

interface ConversationLog {
  head: number;
  /** conversation seq -> message id, while the message is held (for `senders`). */
  bySeq: Map<number, string>;
}

/**
 * In-process outbox: one JS thread makes every append atomic, so seqs (per user and per
 * conversation) are trivially gapless. Entries are kept once and shared by their deliveries.
 * Each user's log is bounded (count and bytes): beyond a bound its oldest deliveries are evicted
 * exactly as expired ones are, so `retention` reports the gap and a device resuming from before
 * it gets `recovered:false` (src/outbox/cursor.ts). Seqs and heads are not affected.
 */
export class MemoryOutboxDriver extends OutboxStore {
  private readonly generation = randomBytes(4).toString('hex');
  private readonly users = new Map<string, UserLog>();
  private readonly entries = new Map<string, Entry>();
  private readonly conversations = new Map<string, ConversationLog>();

  constructor(
    private readonly retentionMs: number,
    private readonly now: () => number = Date.now,
    private readonly limits: MemoryOutboxLimits = UNBOUNDED,
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
        log = { head: 0, rows: [], byMessage: new Map(), bytes: 0 };
        this.users.set(userId, log);
      }
      const existing = log.byMessage.get(envelope.id);
      if (existing !== undefined) {
        return { userId, seq: existing, envelope: this.entries.get(envelope.id)?.envelope ?? envelope };
      }
      const entry = this.entryFor(envelope, expiresAt);
      const seq = ++log.head;
      log.rows.push({ seq, entry, expiresAt });
      log.byMessage.set(envelope.id, seq);
      log.bytes += entry.bytes;
      entry.refs++;
      entry.expiresAt = Math.max(entry.expiresAt, expiresAt);
      this.bound(log);
      return { userId, seq, envelope: entry.envelope };
    });
  }

  /** The stored entry, created on first sight; a new message takes its conversation's next seq. */
  private entryFor(envelope: OutboxEntry, expiresAt: number): Entry {
    let entry = this.entries.get(envelope.id);
    if (entry) return entry;
    let stored: OutboxEntry = envelope;
    if (!isReceiptEntry(envelope)) {
      let conv = this.conversations.get(envelope.conversation_id);
      if (!conv) this.conversations.set(envelope.conversation_id, (conv = { head: 0, bySeq: new Map() }));
      stored = { ...envelope, seq: ++conv.head };
      conv.bySeq.set(conv.head, envelope.id);
    }
    const bytes = JSON.stringify(stored).length;
    this.entries.set(envelope.id, (entry = { envelope: stored, expiresAt, refs: 0, bytes }));
    return entry;
  }

  /** Evicts the user's oldest deliveries beyond the bounds; the newest one always stays. */
  private bound(log: UserLog): void {
    const { maxPerUser, maxBytesPerUser } = this.limits;
    while (log.rows.length > 1 && (log.rows.length > maxPerUser || log.bytes > maxBytesPerUser)) {
      this.drop(log, log.rows.shift()!);
    }
  }

  private drop(log: UserLog, row: Row): void {
    log.byMessage.delete(row.entry.envelope.id);
    log.bytes -= row.entry.bytes;
    this.release(row.entry);
  }

  async readAfter(userId: string, afterSeq: number, limit: number): Promise<StoredDelivery[]> {
    const log = this.users.get(userId);
    if (!log) return [];
    const now = this.now();
    const start = lowerBound(log.rows, afterSeq + 1);
    const out: StoredDelivery[] = [];
    for (let i = start; i < log.rows.length && out.length < limit; i++) {
      const r = log.rows[i];
      if (r.expiresAt > now) out.push({ userId, seq: r.seq, envelope: r.entry.envelope });
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

  async conversationHeads(conversationIds: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const id of conversationIds) out.set(id, this.conversations.get(id)?.head ?? 0);
    return out;
  }

  async senders(conversationId: string, afterSeq: number, uptoSeq: number, limit: number): Promise<string[]> {
    const conv = this.conversations.get(conversationId);
    if (!conv) return [];
    const now = this.now();
    const found = new Set<string>();
    const from = Math.max(afterSeq + 1, uptoSeq - limit + 1);
    for (let seq = Math.min(uptoSeq, conv.head); seq >= from; seq--) {
      const id = conv.bySeq.get(seq);
      const entry = id === undefined ? undefined : this.entries.get(id);
      if (entry && entry.expiresAt > now && !isReceiptEntry(entry.envelope)) found.add(entry.envelope.from);
    }
    return [...found];
  }

  async purgeExpired(limit: number): Promise<number> {
    const now = this.now();
    let purged = 0;
    for (const log of this.users.values()) {
      while (purged < limit && log.rows.length > 0 && log.rows[0].expiresAt <= now) {
        this.drop(log, log.rows.shift()!);
        purged++;
      }
      // The log object (and its head) stays even when empty so cursors remain comparable.
      if (purged >= limit) break;
    }
    return purged;
  }

  /** The last delivery of an entry went: the entry goes too (conversation heads stay). */
  private release(entry: Entry): void {
    if (--entry.refs > 0) return;
    const entryId = entry.envelope.id;
    if (this.entries.get(entryId) === entry) this.entries.delete(entryId);
    const e = entry.envelope;
    if (!isReceiptEntry(e) && e.seq !== undefined)
      this.conversations.get(e.conversation_id)?.bySeq.delete(e.seq);
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
