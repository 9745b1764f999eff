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
  userId: string;
  head: number;
  rows: Row[]; // ascending seq; expired and evicted rows are cut from the front
  /** Sum of the rows' entry sizes. */
  bytes: number;
}

/** One stored entry, shared by all its deliveries (`seqs`: those still held). */
interface Entry {
  envelope: OutboxEntry;
  expiresAt: number;
  /**
   * Recipient -> seq of each delivery still held: the idempotency check of a re-append. Kept with the
   * entry rather than per user: appending a message's deliveries then touches one small map, not
   * one map per recipient (a lookup that misses in each of them was most of an append's time).
   */
  seqs: Map<string, number>;
  /** Its JSON length, counted against each recipient's byte bound. */
  bytes: number;
  /** Its JSON, only during the append call that stored it (handed to the gateway with its deliveries). */
  json: string | undefined;
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
    const created: Entry[] = [];
    // A message's deliveries are usually adjacent: its entry is looked up once for all of them. An
    // entry cannot go while its deliveries are appended (bound() keeps every user's newest row).
    let last: OutboxEntry | null = null;
    let entry: Entry | null = null;
    const stored = deliveries.map(({ userId, envelope, json }): StoredDelivery => {
      if (envelope !== last) {
        last = envelope;
        entry = this.entryFor(envelope, expiresAt, json, created);
      }
      const e = entry!;
      const existing = e.seqs.get(userId);
      if (existing !== undefined) return { userId, seq: existing, envelope: e.envelope };
      let log = this.users.get(userId);
      if (!log) {
        log = { userId, head: 0, rows: [], bytes: 0 };
        this.users.set(userId, log);
      }
      const seq = ++log.head;
      log.rows.push({ seq, entry: e, expiresAt });
      e.seqs.set(userId, seq);
      log.bytes += e.bytes;
      e.expiresAt = Math.max(e.expiresAt, expiresAt);
      this.bound(log);
      return { userId, seq, envelope: e.envelope, json: e.json };
    });
    for (const entry of created) entry.json = undefined; // not kept: the heap holds the entry already
    return stored;
  }

  /**
   * The stored entry, created on first sight (and added to `created`); a new message takes its
   * conversation's next seq. A message's JSON is built from the caller's `json` of the envelope when
   * given: `{...envelope, seq}` serialises as the envelope's object with `"seq"` appended (it has no
   * `seq` of its own), which saves serialising the body again.
   */
  private entryFor(
    envelope: OutboxEntry,
    expiresAt: number,
    json: string | undefined,
    created: Entry[],
  ): Entry {
    let entry = this.entries.get(envelope.id);
    if (entry) return entry;
    let stored: OutboxEntry = envelope;
    let storedJson: string | undefined;
    if (!isReceiptEntry(envelope)) {
      let conv = this.conversations.get(envelope.conversation_id);
      if (!conv) this.conversations.set(envelope.conversation_id, (conv = { head: 0, bySeq: new Map() }));
      const seq = ++conv.head;
      stored = { ...envelope, seq };
      conv.bySeq.set(seq, envelope.id);
      storedJson =
        json !== undefined && json.length > 2 && !('seq' in envelope)
          ? `${json.slice(0, -1)},"seq":${seq}}`
          : JSON.stringify(stored);
    }
    // Receipts: the gateway sends their payload, not this JSON; it only measures the entry.
    const bytes = storedJson?.length ?? JSON.stringify(stored).length;
    entry = { envelope: stored, expiresAt, seqs: new Map(), bytes, json: storedJson };
    this.entries.set(envelope.id, entry);
    created.push(entry);
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
    log.bytes -= row.entry.bytes;
    this.release(row.entry, log.userId);
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
  private release(entry: Entry, userId: string): void {
    entry.seqs.delete(userId);
    if (entry.seqs.size > 0) return;
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
