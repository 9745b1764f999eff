import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DataSource, QueryRunner } from 'typeorm';
import { ER_DUP_ENTRY, ER_NO_SUCH_TABLE, isRetryableTxError, mysqlErrno } from '../../database/mysql-errors';
import { chunks, inTransaction, list, repeat, tuples } from '../../database/transaction';
import { Envelope } from '../../protocol/envelope';
import { isReceiptEntry, OutboxEntry } from '../../protocol/outbox-entry';
import { RetentionState } from '../cursor';
import { NewDelivery, OutboxStats, OutboxStore, StoredDelivery } from '../outbox.store';

/**
 * MySQL/MariaDB outbox (tables from src/database/migrations: outbox_entry, outbox_delivery,
 * outbox_head, relay_meta). Each entry (message or receipt) is one `outbox_entry` row however many
 * recipients it has; each recipient gets a small `outbox_delivery` row pointing at it.
 *
 * How the OutboxStore contract holds with many routers writing at once:
 * 1. Atomic: one `append` is one transaction (READ COMMITTED); any failure rolls all of it back,
 *    the heads included, so a failed append leaves no seq behind.
 * 2. Gapless, commit-ordered seqs, per user and per conversation: every writer first takes the
 *    exclusive locks on the `outbox_head` rows of the conversations of its messages and of its
 *    recipients (INSERT .. ON DUPLICATE KEY UPDATE creates the row or locks the existing one), in
 *    one global order (scope, id), then reads the heads, allocates head+1, head+2, .. in input
 *    order, inserts, moves the heads and commits, which releases the locks. Writers of one user or
 *    one conversation therefore run one after the other: seq order is commit order, and a reader
 *    (one snapshot per statement) that sees seq N also sees every seq < N. A deadlock InnoDB still
 *    reports (insert-intention/gap locks), or a lock wait timeout, runs the whole transaction again.
 * 3. Idempotent: entries are looked up by id while holding those locks. A message already stored
 *    keeps its conversation seq; only for entries already stored are existing (user, entry)
 *    deliveries looked up (a new entry cannot have any), and those keep their seq. Repeats inside
 *    one call are folded first. UNIQUE(user_id, entry_id) and the entry primary key back this up.
 * 4. Expiry: expires_at is the database's NOW(3) + retention; reads compare with the database's
 *    NOW(3): node clocks never matter. Along a user's seqs expires_at does not decrease (writers of
 *    a user are serialised), so purge removes a prefix of each log. An entry expires no earlier than
 *    its last delivery (a new delivery of a stored entry extends it). Heads are never purged.
 * 5. Round trips per append (no redelivery): two. (a) begin + lock the heads + read heads and known
 *    entries, (b) insert entries + insert deliveries + write heads + commit, sent as one
 *    multi-statement query each (a redelivery adds the lookup of 3 in between). Statements are
 *    multi-row (<= chunkRows rows / chunkBytes); a write round trip carries <= chunkBytes.
 * 6. On MariaDB (INSERT .. ON DUPLICATE KEY UPDATE .. RETURNING) an `append` first tries the
 *    optimistic path, which touches each head row once instead of three times: it assumes no entry of
 *    the call is stored yet (true unless the bus redelivers), adds to each head the number of seqs it
 *    needs (which creates or locks the row, in the same global order as 2, and returns its new value),
 *    derives the seqs client side (old head + 1 .. new head, in the order of 4) and inserts. An entry
 *    that was stored after all makes its insert fail on a unique key: the whole transaction rolls
 *    back, heads included, and the append runs again on the path above, which finds it (3).
 */

export interface MysqlOutboxOptions {
  /** Most rows per multi-row statement. */
  chunkRows?: number;
  /** Rough payload budget per INSERT statement, well below max_allowed_packet (16 MiB by default). */
  chunkBytes?: number;
  /** Extra attempts of an append after a deadlock or lock wait timeout. */
  retries?: number;
  /**
   * Try the optimistic append first (point 6 above); needs INSERT .. RETURNING (MariaDB >= 10.5).
   * Default: on when `init` finds such a server.
   */
  optimistic?: boolean;
}

const EPOCH_KEY = 'outbox_epoch';
const MAX_USER_ID = 128;
const MAX_MESSAGE_ID = 64;
const MAX_CONVERSATION_ID = 128;

/** One entry of an append: stored once. */
interface PendingEntry {
  envelope: OutboxEntry;
  /** Conversation order number (messages); 0 until known. */
  convSeq: number;
  /** Already stored (found by id in this transaction). */
  known: boolean;
  /** Stored by the caller's `sequence` just before: no delivery points at it yet, skip that lookup. */
  fresh: boolean;
}

/** A message as `sequence` left it on its home shard. */
export interface SequencedEntry {
  /** Its conversation order number. */
  seq: number;
  /** Stored by this call (no delivery can point at it yet), not found already stored. */
  stored: boolean;
}

/** One (user, entry) delivery of an append. */
interface Pending {
  userId: string;
  entry: PendingEntry;
  seq: number; // 0 until known
}

type Scope = 'u' | 'c';

export class MysqlOutboxDriver extends OutboxStore {
  private generation: string | null = null;
  private readonly chunkRows: number;
  private readonly chunkBytes: number;
  private readonly retries: number;
  private optimistic: boolean | undefined;

  constructor(
    private readonly ds: DataSource,
    private readonly retentionSec: number,
    options: MysqlOutboxOptions = {},
  ) {
    super();
    // Interpolated into SQL below, so it must be a plain positive integer.
    if (!Number.isSafeInteger(retentionSec) || retentionSec < 1) {
      throw new Error(`outbox retention must be a positive integer of seconds, got ${retentionSec}`);
    }
    this.chunkRows = options.chunkRows ?? 1000;
    this.chunkBytes = options.chunkBytes ?? 4 * 1024 * 1024;
    this.retries = options.retries ?? 5;
    this.optimistic = options.optimistic;
  }

  /**
   * Loads the store's epoch, creating it on the very first start (insert-if-absent, read back):
   * `epochIfNew` when given (the shards of one sharded outbox share their first shard's), else random.
   */
  async init(epochIfNew?: string): Promise<this> {
    try {
      await this.ds.query(
        `INSERT INTO relay_meta (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE name = name`,
        [EPOCH_KEY, epochIfNew ?? randomBytes(8).toString('hex')],
      );
      const rows: { value: string }[] = await this.ds.query(`SELECT value FROM relay_meta WHERE name = ?`, [
        EPOCH_KEY,
      ]);
      this.generation = rows[0].value;
      await this.ds.query(`SELECT 1 FROM outbox_head LIMIT 0`); // the v1.1 tables exist
      this.optimistic ??= await this.supportsReturning();
    } catch (err) {
      if (mysqlErrno(err) === ER_NO_SUCH_TABLE) {
        throw new Error(
          'the outbox tables do not exist: run the migrations (node dist/database/migrate.cli.js) or start with MYSQL_MIGRATE_ON_START=true',
        );
      }
      throw err;
    }
    return this;
  }

  /** INSERT .. RETURNING: MariaDB from 10.5 on; MySQL has none. */
  private async supportsReturning(): Promise<boolean> {
    const [row]: { v: string }[] = await this.ds.query(`SELECT VERSION() AS v`);
    const m = /^(\d+)\.(\d+)\.\d+-MariaDB/i.exec(row?.v ?? '');
    return m !== null && (Number(m[1]) > 10 || (Number(m[1]) === 10 && Number(m[2]) >= 5));
  }

  /** The stored epoch, or null when this database has none yet (a shard never initialised). */
  async storedEpoch(): Promise<string | null> {
    const rows: { value: string }[] = await this.ds.query(`SELECT value FROM relay_meta WHERE name = ?`, [
      EPOCH_KEY,
    ]);
    return rows[0]?.value ?? null;
  }

  /** True when no user log was ever written here (no user head). */
  async isEmpty(): Promise<boolean> {
    const rows: unknown[] = await this.ds.query(`SELECT 1 FROM outbox_head WHERE scope = 'u' LIMIT 1`);
    return rows.length === 0;
  }

  epoch(): string {
    if (this.generation === null) throw new Error('MysqlOutboxDriver used before init()');
    return this.generation;
  }

  async append(deliveries: NewDelivery[]): Promise<StoredDelivery[]> {
    return this.write(deliveries, [], true);
  }

  /**
   * Sharded outbox, on the home shard of the messages' conversations: stores each message once (no
   * delivery) and gives it its conversation order number, with the rules of `append` (gapless, in
   * input order, in commit order; a message already stored keeps its number). Returns id -> number.
   */
  async sequence(messages: OutboxEntry[]): Promise<Map<string, SequencedEntry>> {
    const out = new Map<string, SequencedEntry>();
    const toStore = messages.filter((m) => !isReceiptEntry(m));
    if (toStore.length === 0) return out;
    const entries = await this.writeEntries([], toStore, true);
    for (const e of entries.values()) out.set(e.envelope.id, { seq: e.convSeq, stored: !e.known });
    return out;
  }

  /**
   * Sharded outbox, on a user's shard: like `append`, but every message already carries its
   * conversation order number (`envelope.seq`, from `sequence` on its home shard), which is stored
   * as given: this shard holds no conversation head. `fresh`: ids `sequence` just stored (on this
   * shard, its home): no delivery of them can exist, so their lookup is skipped (a concurrent writer
   * that did add one makes the insert fail on UNIQUE(user_id, entry_id); the append is then retried
   * with the lookup).
   */
  async appendSequenced(
    deliveries: NewDelivery[],
    fresh: ReadonlySet<string> = new Set(),
  ): Promise<StoredDelivery[]> {
    for (const { envelope } of deliveries) {
      if (!isReceiptEntry(envelope) && !(Number.isSafeInteger(envelope.seq) && envelope.seq! > 0)) {
        throw new Error(`message ${envelope.id} has no conversation order number`);
      }
    }
    return this.write(deliveries, [], false, fresh);
  }

  private async write(
    deliveries: NewDelivery[],
    extra: OutboxEntry[],
    allocateConvSeq: boolean,
    fresh: ReadonlySet<string> = new Set(),
  ): Promise<StoredDelivery[]> {
    if (deliveries.length === 0 && extra.length === 0) return [];
    const slots: Pending[] = [];
    await this.writeEntries(deliveries, extra, allocateConvSeq, slots, fresh);
    return slots.map((p) => ({ userId: p.userId, seq: p.seq, envelope: stored(p.entry) }));
  }

  /** The append transaction with its retries; fills `slots` with one Pending per delivery, in input order. */
  private async writeEntries(
    deliveries: NewDelivery[],
    extra: OutboxEntry[],
    allocateConvSeq: boolean,
    slots: Pending[] = [],
    fresh: ReadonlySet<string> = new Set(),
  ): Promise<Map<string, PendingEntry>> {
    // Fold repeats of one (user, entry) inside the call into one Pending; `ordered` lists the
    // distinct ones in input order, which decides their seq order; `entries` is in first-seen order,
    // which decides the conversation seqs.
    const entries = new Map<string, PendingEntry>();
    const byUser = new Map<string, Map<string, Pending>>();
    const ordered: Pending[] = [];
    const entryOf = (envelope: OutboxEntry): PendingEntry => {
      if (envelope.id.length === 0 || envelope.id.length > MAX_MESSAGE_ID) {
        throw new Error(`invalid outbox message id "${envelope.id}"`);
      }
      if (envelope.conversation_id.length === 0 || envelope.conversation_id.length > MAX_CONVERSATION_ID) {
        throw new Error(`invalid outbox conversation id "${envelope.conversation_id}"`);
      }
      let entry = entries.get(envelope.id);
      if (!entry) entries.set(envelope.id, (entry = { envelope, convSeq: 0, known: false, fresh: false }));
      return entry;
    };
    for (const envelope of extra) entryOf(envelope);
    for (const { userId, envelope } of deliveries) {
      if (userId.length === 0 || userId.length > MAX_USER_ID) {
        throw new Error(`invalid outbox user id "${userId}"`);
      }
      const entry = entryOf(envelope);
      let messages = byUser.get(userId);
      if (!messages) byUser.set(userId, (messages = new Map()));
      let p = messages.get(envelope.id);
      if (!p) {
        messages.set(envelope.id, (p = { userId, entry, seq: 0 }));
        ordered.push(p);
      }
      slots.push(p);
    }

    // Only a plain append (conversation seqs allocated here, no entry stored without deliveries)
    // can go optimistic; anything it cannot settle falls back to the careful path below.
    if (this.optimistic && allocateConvSeq && extra.length === 0 && ordered.length > 0) {
      try {
        await this.inTx((qr) => this.appendOptimistic(qr, entries, byUser, ordered));
        return entries;
      } catch (err) {
        if (mysqlErrno(err) !== ER_DUP_ENTRY && !isRetryableTxError(err)) throw err;
      }
    }
    let trustFresh = fresh.size > 0;
    for (let attempt = 0; ; attempt++) {
      // A retried attempt starts from scratch.
      for (const e of entries.values()) {
        Object.assign(e, { convSeq: 0, known: false, fresh: trustFresh && fresh.has(e.envelope.id) });
      }
      for (const p of ordered) p.seq = 0;
      try {
        await this.inTx((qr) => this.appendStatements(qr, entries, byUser, ordered, allocateConvSeq));
        break;
      } catch (err) {
        // A "fresh" entry got a delivery from a concurrent writer after all: look them up this time.
        if (trustFresh && mysqlErrno(err) === ER_DUP_ENTRY) trustFresh = false;
        else if (attempt >= this.retries || !isRetryableTxError(err)) throw err;
      }
      // Jittered backoff so the transactions that collided do not collide again in lockstep.
      await sleep(Math.floor(Math.random() * 10 * 2 ** attempt) + 1);
    }
    return entries;
  }

  /**
   * One append transaction: `statements` sends its round trips, the last ending in COMMIT. The
   * statements of a round trip run in order on the server and stop at the first error; any error
   * rolls the whole transaction back before the connection returns to the pool.
   */
  private async inTx(statements: (qr: QueryRunner) => Promise<void>): Promise<void> {
    const qr = this.ds.createQueryRunner();
    await qr.connect();
    let clean = false; // the connection holds no open transaction
    try {
      await statements(qr);
      clean = true;
    } catch (err) {
      clean = await qr.query('ROLLBACK').then(
        () => true,
        () => false,
      );
      throw err;
    } finally {
      // A connection whose rollback failed may still hold the transaction: never reuse it.
      if (!clean) destroyConnection(qr);
      await qr.release().catch(() => undefined);
    }
  }

  private async appendStatements(
    qr: QueryRunner,
    entries: Map<string, PendingEntry>,
    byUser: Map<string, Map<string, Pending>>,
    ordered: Pending[],
    allocateConvSeq: boolean,
  ): Promise<void> {
    // (1) Lock the head rows (conversations of the messages, then recipients), in one global order.
    // The locks come from the upsert alone. The read in (2) is deliberately not `FOR UPDATE`: on a
    // small table InnoDB serves an IN list by scanning the primary key and would lock (wait for) rows
    // of others on the way, out of order, which deadlocks writers of disjoint users. A READ COMMITTED
    // read returns the latest committed head, and holding the row's lock means there is no newer one.
    // A shard that does not allocate conversation seqs (appendSequenced) holds no conversation head.
    const conversations = [
      ...new Set(
        [...entries.values()]
          .filter(() => allocateConvSeq)
          .filter((e) => !isReceiptEntry(e.envelope))
          .map((e) => e.envelope.conversation_id),
      ),
    ].sort();
    const users = [...byUser.keys()].sort();
    const keys: [Scope, string][] = [
      ...conversations.map((c): [Scope, string] => ['c', c]),
      ...users.map((u): [Scope, string] => ['u', u]),
    ];
    const first: Statement[] = [
      { sql: 'SET TRANSACTION ISOLATION LEVEL READ COMMITTED', params: [] },
      { sql: 'START TRANSACTION', params: [] },
    ];
    for (const part of chunks(keys, this.chunkRows)) {
      first.push({
        sql: `INSERT INTO outbox_head (scope, id, seq) VALUES ${repeat('(?, ?, 0)', part.length)} ON DUPLICATE KEY UPDATE seq = seq`,
        params: part.flat(),
      });
    }
    const locks = first.length;

    // (2) In the same round trip: the heads and the entries already stored.
    const reads: Statement[] = [];
    for (const part of chunks(conversations, this.chunkRows)) {
      reads.push({
        sql: `SELECT scope, id, seq FROM outbox_head WHERE scope = 'c' AND id IN (${list(part.length)})`,
        params: part,
      });
    }
    for (const part of chunks(users, this.chunkRows)) {
      reads.push({
        sql: `SELECT scope, id, seq FROM outbox_head WHERE scope = 'u' AND id IN (${list(part.length)})`,
        params: part,
      });
    }
    for (const part of chunks([...entries.keys()], this.chunkRows)) {
      reads.push({
        sql: `SELECT 'e' AS scope, entry_id AS id, COALESCE(conv_seq, 0) AS seq FROM outbox_entry WHERE entry_id IN (${list(part.length)})`,
        params: part,
      });
    }
    for (const group of chunks(reads, 4)) {
      first.push({
        sql: group.map((r) => `(${r.sql})`).join(' UNION ALL '),
        params: group.flatMap((r) => r.params),
      });
    }
    const heads = { c: new Map<string, number>(), u: new Map<string, number>() };
    const results = await multi(qr, first);
    for (const rows of results.slice(locks) as { scope: string; id: string; seq: number | string }[][]) {
      for (const r of rows) {
        if (r.scope === 'e') {
          const e = entries.get(r.id);
          if (e) Object.assign(e, { known: true, convSeq: Number(r.seq) });
        } else heads[r.scope as Scope].set(r.id, Number(r.seq));
      }
    }
    for (const u of users) if (!heads.u.has(u)) throw new Error(`outbox head row of user ${u} vanished`);
    for (const c of conversations)
      if (!heads.c.has(c)) throw new Error(`outbox head row of conversation ${c} vanished`);

    // (3) Deliveries of entries already stored keep their seq (redelivery only: a new entry has none).
    const candidates = ordered.filter((p) => p.entry.known && !p.entry.fresh);
    if (candidates.length > 0) {
      const lookups = chunks(candidates, this.chunkRows).map((part) => ({
        sql: `SELECT user_id, entry_id, seq FROM outbox_delivery WHERE (user_id, entry_id) IN (${tuples(part.length, 2)})`,
        params: part.flatMap((p) => [p.userId, p.entry.envelope.id]),
      }));
      for (const rows of (await multi(qr, lookups)) as {
        user_id: string;
        entry_id: string;
        seq: number | string;
      }[][]) {
        for (const r of rows) {
          const p = byUser.get(r.user_id)?.get(r.entry_id);
          if (p) p.seq = Number(r.seq);
        }
      }
    }

    // (4) New messages get their conversation's next seqs in first-seen order, new deliveries
    // their user's, in input order.
    const freshEntries: PendingEntry[] = [];
    for (const e of entries.values()) {
      if (e.known) continue;
      freshEntries.push(e);
      if (isReceiptEntry(e.envelope)) continue;
      if (!allocateConvSeq) {
        e.convSeq = e.envelope.seq!; // checked by appendSequenced
        continue;
      }
      const c = e.envelope.conversation_id;
      e.convSeq = heads.c.get(c)! + 1;
      heads.c.set(c, e.convSeq);
    }
    const fresh: Pending[] = [];
    const extended = new Set<string>(); // stored entries that get new deliveries: expiry moves on
    for (const p of ordered) {
      if (p.seq > 0) continue;
      const seq = heads.u.get(p.userId)! + 1;
      heads.u.set(p.userId, seq);
      p.seq = seq;
      fresh.push(p);
      if (p.entry.known) extended.add(p.entry.envelope.id);
    }

    // (5) Entries, once each, then the deliveries (multi-row inserts bounded in rows and bytes),
    // (6) the heads that moved, then the commit: sent together, a round trip per chunkBytes.
    const writes = this.insertStatements(freshEntries, fresh, extended);
    const moved: [Scope, string, number][] = [];
    for (const c of new Set(
      freshEntries.filter((e) => allocateConvSeq && e.convSeq > 0).map((e) => e.envelope.conversation_id),
    )) {
      moved.push(['c', c, heads.c.get(c)!]);
    }
    for (const u of new Set(fresh.map((p) => p.userId))) moved.push(['u', u, heads.u.get(u)!]);
    moved.sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) : a[0] < b[0] ? -1 : 1));
    for (const part of chunks(moved, this.chunkRows)) {
      writes.push({
        sql: `INSERT INTO outbox_head (scope, id, seq) VALUES ${tuples(part.length, 3)} ON DUPLICATE KEY UPDATE seq = VALUES(seq)`,
        params: part.flat(),
        bytes: part.length * 200,
      });
    }
    await this.commitGrouped(qr, writes);
  }

  /**
   * The optimistic append (point 6 of the header), in two round trips: (a) isolation, begin, and one
   * upsert per chunk of heads that adds each head's count of new seqs and returns the new value;
   * (b) the inserts and the commit. Every entry is taken as new, so the caller falls back to
   * `appendStatements` on ER_DUP_ENTRY (an entry or a (user, entry) delivery was stored after all).
   */
  private async appendOptimistic(
    qr: QueryRunner,
    entries: Map<string, PendingEntry>,
    byUser: Map<string, Map<string, Pending>>,
    ordered: Pending[],
  ): Promise<void> {
    const perConversation = new Map<string, number>();
    for (const e of entries.values()) {
      if (isReceiptEntry(e.envelope)) continue;
      const c = e.envelope.conversation_id;
      perConversation.set(c, (perConversation.get(c) ?? 0) + 1);
    }
    const keys: [Scope, string, number][] = [
      ...[...perConversation.keys()]
        .sort()
        .map((c): [Scope, string, number] => ['c', c, perConversation.get(c)!]),
      ...[...byUser.keys()].sort().map((u): [Scope, string, number] => ['u', u, byUser.get(u)!.size]),
    ];
    const first: Statement[] = [
      { sql: 'SET TRANSACTION ISOLATION LEVEL READ COMMITTED', params: [] },
      { sql: 'START TRANSACTION', params: [] },
    ];
    for (const part of chunks(keys, this.chunkRows)) {
      first.push({
        sql: `INSERT INTO outbox_head (scope, id, seq) VALUES ${tuples(part.length, 3)} ON DUPLICATE KEY UPDATE seq = seq + VALUES(seq) RETURNING scope, id, seq`,
        params: part.flat(),
      });
    }
    // The head before this append: its new value minus what was added.
    const returned = { c: new Map<string, number>(), u: new Map<string, number>() };
    for (const rows of (await multi(qr, first)).slice(2) as {
      scope: Scope;
      id: string;
      seq: number | string;
    }[][]) {
      for (const r of rows) returned[r.scope].set(r.id, Number(r.seq));
    }
    const next = { c: new Map<string, number>(), u: new Map<string, number>() };
    for (const [scope, id, added] of keys) {
      const head = returned[scope].get(id);
      if (head === undefined) throw new Error(`outbox head row ${scope}:${id} was not returned`);
      next[scope].set(id, head - added);
    }
    for (const e of entries.values()) {
      if (isReceiptEntry(e.envelope)) continue;
      const c = e.envelope.conversation_id;
      e.convSeq = next.c.get(c)! + 1;
      next.c.set(c, e.convSeq);
    }
    for (const p of ordered) {
      p.seq = next.u.get(p.userId)! + 1;
      next.u.set(p.userId, p.seq);
    }
    await this.commitGrouped(qr, this.insertStatements([...entries.values()], ordered, new Set()));
  }

  /** The inserts of an append: entries once each, expiry of stored entries moved on, deliveries. */
  private insertStatements(
    freshEntries: PendingEntry[],
    fresh: Pending[],
    extended: Set<string>,
  ): Statement[] {
    const writes: Statement[] = [];
    const expires = `NOW(3) + INTERVAL ${this.retentionSec} SECOND`;
    this.insertChunked(
      writes,
      `INSERT INTO outbox_entry (entry_id, conversation_id, conv_seq, sender, payload, created_at, expires_at) VALUES `,
      `(?, ?, ?, ?, ?, NOW(3), ${expires})`,
      freshEntries.map((e) => {
        const payload = payloadOf(e.envelope);
        const sender = isReceiptEntry(e.envelope) ? null : e.envelope.from;
        return {
          params: [e.envelope.id, e.envelope.conversation_id, e.convSeq || null, sender, payload],
          bytes: payload.length + 256,
        };
      }),
    );
    for (const part of chunks([...extended], this.chunkRows)) {
      writes.push({
        sql: `UPDATE outbox_entry SET expires_at = GREATEST(expires_at, ${expires}) WHERE entry_id IN (${list(part.length)})`,
        params: part,
        bytes: part.length * 80,
      });
    }
    this.insertChunked(
      writes,
      `INSERT INTO outbox_delivery (user_id, seq, entry_id, created_at, expires_at) VALUES `,
      `(?, ?, ?, NOW(3), ${expires})`,
      fresh.map((p) => ({ params: [p.userId, p.seq, p.entry.envelope.id], bytes: p.userId.length + 128 })),
    );
    return writes;
  }

  /** `writes` then COMMIT, a round trip per chunkBytes of statements. */
  private async commitGrouped(qr: QueryRunner, writes: Statement[]): Promise<void> {
    writes.push({ sql: 'COMMIT', params: [], bytes: 0 });
    let group: Statement[] = [];
    let bytes = 0;
    for (const w of writes) {
      if (group.length > 0 && bytes + (w.bytes ?? 0) > this.chunkBytes) {
        await multi(qr, group);
        group = [];
        bytes = 0;
      }
      group.push(w);
      bytes += w.bytes ?? 0;
    }
    await multi(qr, group);
  }

  /** `head` + rows joined by commas, one statement per chunkRows rows or chunkBytes bytes. */
  private insertChunked(
    out: Statement[],
    head: string,
    row: string,
    rows: { params: unknown[]; bytes: number }[],
  ): void {
    let params: unknown[] = [];
    let n = 0;
    let bytes = 0;
    const flush = () => {
      if (n === 0) return;
      out.push({ sql: head + repeat(row, n), params, bytes });
      params = [];
      n = 0;
      bytes = 0;
    };
    for (const r of rows) {
      if (n > 0 && (n >= this.chunkRows || bytes + r.bytes > this.chunkBytes)) flush();
      for (const v of r.params) params.push(v);
      n++;
      bytes += r.bytes;
    }
    flush();
  }

  async readAfter(userId: string, afterSeq: number, limit: number): Promise<StoredDelivery[]> {
    if (limit <= 0) return [];
    const rows: { seq: number | string; payload: unknown; conv_seq: number | string | null }[] =
      await this.ds.query(
        `SELECT d.seq, e.payload, e.conv_seq FROM outbox_delivery d JOIN outbox_entry e ON e.entry_id = d.entry_id
       WHERE d.user_id = ? AND d.seq > ? AND d.expires_at > NOW(3)
       ORDER BY d.seq LIMIT ?`,
        [userId, afterSeq, Math.floor(limit)],
      );
    return rows.map((r) => ({ userId, seq: Number(r.seq), envelope: parseEntry(r.payload, r.conv_seq) }));
  }

  async retention(userId: string, afterSeq: number): Promise<RetentionState> {
    // One statement, so head and first retained come from one snapshot.
    const [row]: { head: number | string | null; first: number | string | null }[] = await this.ds.query(
      `SELECT
         (SELECT seq FROM outbox_head WHERE scope = 'u' AND id = ?) AS head,
         (SELECT seq FROM outbox_delivery WHERE user_id = ? AND seq > ? AND expires_at > NOW(3) ORDER BY seq LIMIT 1) AS first`,
      [userId, userId, afterSeq],
    );
    return {
      head: row.head === null ? 0 : Number(row.head),
      firstRetainedAfter: row.first === null ? null : Number(row.first),
    };
  }

  async conversationHeads(conversationIds: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const part of chunks([...new Set(conversationIds)], this.chunkRows)) {
      const rows: { id: string; seq: number | string }[] = await this.ds.query(
        `SELECT id, seq FROM outbox_head WHERE scope = 'c' AND id IN (${list(part.length)})`,
        part,
      );
      for (const r of rows) out.set(r.id, Number(r.seq));
    }
    for (const id of conversationIds) if (!out.has(id)) out.set(id, 0);
    return out;
  }

  async senders(conversationId: string, afterSeq: number, uptoSeq: number, limit: number): Promise<string[]> {
    const from = Math.max(afterSeq + 1, uptoSeq - Math.floor(limit) + 1);
    if (from > uptoSeq) return [];
    // A range of UNIQUE(conversation_id, conv_seq): at most `limit` index entries are read.
    const rows: { sender: string }[] = await this.ds.query(
      `SELECT DISTINCT sender FROM outbox_entry
       WHERE conversation_id = ? AND conv_seq BETWEEN ? AND ? AND expires_at > NOW(3) AND sender IS NOT NULL`,
      [conversationId, from, uptoSeq],
    );
    return rows.map((r) => r.sender);
  }

  async purgeExpired(limit: number): Promise<number> {
    if (limit <= 0) return 0;
    // READ COMMITTED: the range deletes take no gap locks that could stall concurrent appends. An
    // entry expires no earlier than its deliveries, so none is deleted while a live delivery needs it.
    return inTransaction(
      this.ds,
      async (qr) => {
        const result = await qr.query(
          `DELETE FROM outbox_delivery WHERE expires_at <= NOW(3) ORDER BY expires_at LIMIT ?`,
          [Math.floor(limit)],
          true,
        );
        await qr.query(`DELETE FROM outbox_entry WHERE expires_at <= NOW(3) ORDER BY expires_at LIMIT ?`, [
          Math.floor(limit),
        ]);
        return result.affected ?? 0;
      },
      { isolation: 'READ COMMITTED', retries: 2 },
    );
  }

  /**
   * Two primary-key lookups, no scan: rows is the id range of the deliveries (ids are allocated in
   * insert order and the purge removes old rows first, so the range stays close to the count), the
   * age is the lowest id's.
   */
  async stats(): Promise<OutboxStats> {
    const [row]: { n: number | string | null; age_us: number | string | null }[] = await this.ds.query(
      `SELECT
         (SELECT MAX(id) - MIN(id) + 1 FROM outbox_delivery) AS n,
         (SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3)) FROM outbox_delivery ORDER BY id LIMIT 1) AS age_us`,
    );
    if (row.n === null || row.age_us === null) return { rows: 0, oldestAgeMs: null };
    return { rows: Number(row.n), oldestAgeMs: Math.max(0, Number(row.age_us) / 1000) };
  }

  async ping(): Promise<void> {
    await this.ds.query('SELECT 1');
  }
}

/** The entry as every recipient gets it: a message carries its conversation seq. */
function stored(e: PendingEntry): OutboxEntry {
  if (isReceiptEntry(e.envelope)) return e.envelope;
  return { ...e.envelope, seq: e.convSeq };
}

/** What is stored: a message without `seq` (the conv_seq column is the truth), a receipt as it is. */
function payloadOf(e: OutboxEntry): string {
  if (isReceiptEntry(e) || e.seq === undefined) return JSON.stringify(e);
  const { seq: _seq, ...rest } = e;
  return JSON.stringify(rest);
}

/** Payload columns come back as text (LONGTEXT); older MySQL JSON columns as parsed values. */
function parseEntry(raw: unknown, convSeq: number | string | null): OutboxEntry {
  let e: OutboxEntry;
  if (typeof raw === 'string') e = JSON.parse(raw) as OutboxEntry;
  else if (Buffer.isBuffer(raw)) e = JSON.parse(raw.toString('utf8')) as OutboxEntry;
  else e = raw as OutboxEntry;
  if (convSeq !== null && !isReceiptEntry(e)) (e as Envelope).seq = Number(convSeq);
  return e;
}

/** One SQL statement of a multi-statement round trip; `bytes` roughly what it sends. */
interface Statement {
  sql: string;
  params: unknown[];
  bytes?: number;
}

/**
 * Sends the statements in one round trip (the DataSource has `multipleStatements`) and returns one
 * result per statement: rows for a SELECT, a result header otherwise.
 */
async function multi(qr: QueryRunner, statements: Statement[]): Promise<unknown[]> {
  const params: unknown[] = [];
  for (const s of statements) for (const v of s.params) params.push(v);
  const raw: unknown = await qr.query(statements.map((s) => s.sql).join(';\n'), params);
  // One statement: mysql2 returns its result itself, not a list of results.
  return statements.length === 1 ? [raw] : (raw as unknown[]);
}

/** Closes the query runner's pooled connection for good (the pool opens a new one). */
function destroyConnection(qr: QueryRunner): void {
  const conn = (qr as unknown as { databaseConnection?: { destroy?: () => void } }).databaseConnection;
  try {
    conn?.destroy?.();
  } catch {
    // already gone
  }
}
