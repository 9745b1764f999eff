import { randomBytes } from 'node:crypto';
import { DataSource, QueryRunner } from 'typeorm';
import { ER_NO_SUCH_TABLE, mysqlErrno } from '../../database/mysql-errors';
import { chunks, inTransaction, list, repeat, tuples } from '../../database/transaction';
import { Envelope } from '../../protocol/envelope';
import { RetentionState } from '../cursor';
import { NewDelivery, OutboxStats, OutboxStore, StoredDelivery } from '../outbox.store';

/**
 * MySQL/MariaDB outbox (tables from src/database/migrations: outbox, outbox_user_seq, relay_meta).
 *
 * How the OutboxStore contract holds with many routers writing at once:
 * 1. Atomic: one `append` is one transaction (READ COMMITTED); any failure rolls all of it back,
 *    the per-user heads included, so a failed append leaves no seq behind.
 * 2. Gapless, commit-ordered seqs: every writer of user U first takes the exclusive lock on U's row
 *    in outbox_user_seq (INSERT .. ON DUPLICATE KEY UPDATE creates the row or locks the existing
 *    one), reads the head, allocates head+1, head+2, .. in input order, inserts, moves the head
 *    and commits, which releases the lock. Writers of one user therefore run one after the other:
 *    the next one reads the head only after the previous one committed, so seq order is commit
 *    order, and a reader (one snapshot per statement) that sees seq N also sees every seq < N.
 *    Users are locked in sorted order, so writers with overlapping users queue instead of
 *    deadlocking on these locks; a deadlock InnoDB still reports (insert-intention/gap locks), or a
 *    lock wait timeout, runs the whole transaction again.
 * 3. Idempotent: existing (user_id, message_id) rows are looked up while holding the user's lock,
 *    so a redelivered delivery gets its original seq and nothing is written; repeats inside one
 *    call are folded before that. UNIQUE(user_id, message_id) backs this up.
 * 4. Expiry: expires_at is the database's NOW(3) + retention, and reads compare with the
 *    database's NOW(3): node clocks never matter. A writer inserts only after the previous writer
 *    of the user committed, so (for one retention) expires_at does not decrease along a user's
 *    seqs: expiry and purge remove a prefix of the log, never a hole in the middle. Heads live in
 *    outbox_user_seq, which purge never touches, so they survive expiry.
 */

export interface MysqlOutboxOptions {
  /** Most rows per multi-row statement. */
  chunkRows?: number;
  /** Rough payload budget per INSERT statement, well below max_allowed_packet (16 MiB by default). */
  chunkBytes?: number;
  /** Extra attempts of an append after a deadlock or lock wait timeout. */
  retries?: number;
}

const EPOCH_KEY = 'outbox_epoch';
const MAX_USER_ID = 128;
const MAX_MESSAGE_ID = 64;

interface Pending {
  userId: string;
  envelope: Envelope;
  seq: number; // 0 until known
}

export class MysqlOutboxDriver extends OutboxStore {
  private generation: string | null = null;
  private readonly chunkRows: number;
  private readonly chunkBytes: number;
  private readonly retries: number;

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
  }

  /** Loads the store's epoch, creating it on the very first start (insert-if-absent, read back). */
  async init(): Promise<this> {
    try {
      await this.ds.query(
        `INSERT INTO relay_meta (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE name = name`,
        [EPOCH_KEY, randomBytes(8).toString('hex')],
      );
      const rows: { value: string }[] = await this.ds.query(`SELECT value FROM relay_meta WHERE name = ?`, [
        EPOCH_KEY,
      ]);
      this.generation = rows[0].value;
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

  epoch(): string {
    if (this.generation === null) throw new Error('MysqlOutboxDriver used before init()');
    return this.generation;
  }

  async append(deliveries: NewDelivery[]): Promise<StoredDelivery[]> {
    if (deliveries.length === 0) return [];
    // Fold repeats of one (user, message) inside the call into one Pending; `ordered` lists the
    // distinct ones in input order, which decides their seq order.
    const byUser = new Map<string, Map<string, Pending>>();
    const slots: Pending[] = [];
    const ordered: Pending[] = [];
    for (const { userId, envelope } of deliveries) {
      if (userId.length === 0 || userId.length > MAX_USER_ID) {
        throw new Error(`invalid outbox user id "${userId}"`);
      }
      if (envelope.id.length === 0 || envelope.id.length > MAX_MESSAGE_ID) {
        throw new Error(`invalid outbox message id "${envelope.id}"`);
      }
      let messages = byUser.get(userId);
      if (!messages) byUser.set(userId, (messages = new Map()));
      let p = messages.get(envelope.id);
      if (!p) {
        messages.set(envelope.id, (p = { userId, envelope, seq: 0 }));
        ordered.push(p);
      }
      slots.push(p);
    }

    await inTransaction(
      this.ds,
      async (qr) => {
        for (const p of ordered) p.seq = 0; // a retried attempt starts from scratch
        await this.appendTx(qr, byUser, ordered);
      },
      { isolation: 'READ COMMITTED', retries: this.retries },
    );
    return slots.map((p, i) => ({ userId: p.userId, seq: p.seq, envelope: deliveries[i].envelope }));
  }

  private async appendTx(
    qr: QueryRunner,
    byUser: Map<string, Map<string, Pending>>,
    ordered: Pending[],
  ): Promise<void> {
    // (1) Lock the users' head rows, in one global order, and read the heads. The locks come from
    // the upsert alone. The read is deliberately not `FOR UPDATE`: on a small table InnoDB serves
    // an IN list by scanning the primary key and would lock (wait for) rows of other users on
    // the way, out of order, which deadlocks writers of disjoint users. A READ COMMITTED read
    // returns the latest committed head, and holding the row's lock means there is no newer one.
    // (This needs READ COMMITTED: under REPEATABLE READ the snapshot of the first chunk's read
    // would predate the locks of later chunks.)
    const users = [...byUser.keys()].sort();
    const heads = new Map<string, number>();
    for (const part of chunks(users, this.chunkRows)) {
      await qr.query(
        `INSERT INTO outbox_user_seq (user_id, seq) VALUES ${repeat('(?, 0)', part.length)}
         ON DUPLICATE KEY UPDATE seq = seq`,
        part,
      );
      const rows: { user_id: string; seq: number | string }[] = await qr.query(
        `SELECT user_id, seq FROM outbox_user_seq WHERE user_id IN (${list(part.length)})`,
        part,
      );
      for (const r of rows) heads.set(r.user_id, Number(r.seq));
    }
    for (const u of users) if (!heads.has(u)) throw new Error(`outbox head row of user ${u} vanished`);

    // (2) Deliveries already stored keep their seq (a user with head 0 has none).
    const candidates = ordered.filter((p) => heads.get(p.userId)! > 0);
    for (const part of chunks(candidates, this.chunkRows)) {
      const rows: { user_id: string; message_id: string; seq: number | string }[] = await qr.query(
        `SELECT user_id, message_id, seq FROM outbox WHERE (user_id, message_id) IN (${tuples(part.length, 2)})`,
        part.flatMap((p) => [p.userId, p.envelope.id]),
      );
      for (const r of rows) {
        const p = byUser.get(r.user_id)?.get(r.message_id);
        if (p) p.seq = Number(r.seq);
      }
    }

    // (3) New deliveries get head+1, head+2, .. in input order.
    const fresh: Pending[] = [];
    for (const p of ordered) {
      if (p.seq > 0) continue;
      const seq = heads.get(p.userId)! + 1;
      heads.set(p.userId, seq);
      p.seq = seq;
      fresh.push(p);
    }
    if (fresh.length === 0) return;

    // (4) Multi-row inserts, bounded in rows and bytes.
    const payloads = new Map<Envelope, string>(); // fan-out: one serialisation per message
    const payloadOf = (e: Envelope) => {
      let json = payloads.get(e);
      if (json === undefined) payloads.set(e, (json = JSON.stringify(e)));
      return json;
    };
    const row = `(?, ?, ?, ?, NOW(3), NOW(3) + INTERVAL ${this.retentionSec} SECOND)`;
    let batch: unknown[] = [];
    let rows = 0;
    let bytes = 0;
    const flush = async () => {
      if (rows === 0) return;
      await qr.query(
        `INSERT INTO outbox (user_id, seq, message_id, payload, created_at, expires_at) VALUES ${repeat(row, rows)}`,
        batch,
      );
      batch = [];
      rows = 0;
      bytes = 0;
    };
    for (const p of fresh) {
      const payload = payloadOf(p.envelope);
      if (rows > 0 && (rows >= this.chunkRows || bytes + payload.length > this.chunkBytes)) await flush();
      batch.push(p.userId, p.seq, p.envelope.id, payload);
      rows++;
      bytes += payload.length + p.userId.length + 64;
    }
    await flush();

    // (5) Move the heads of the users that got new deliveries.
    const advanced = [...new Set(fresh.map((p) => p.userId))].sort();
    for (const part of chunks(advanced, this.chunkRows)) {
      await qr.query(
        `INSERT INTO outbox_user_seq (user_id, seq) VALUES ${tuples(part.length, 2)}
         ON DUPLICATE KEY UPDATE seq = VALUES(seq)`,
        part.flatMap((u) => [u, heads.get(u)!]),
      );
    }
  }

  async readAfter(userId: string, afterSeq: number, limit: number): Promise<StoredDelivery[]> {
    if (limit <= 0) return [];
    const rows: { seq: number | string; payload: unknown }[] = await this.ds.query(
      `SELECT seq, payload FROM outbox
       WHERE user_id = ? AND seq > ? AND expires_at > NOW(3)
       ORDER BY seq LIMIT ?`,
      [userId, afterSeq, Math.floor(limit)],
    );
    return rows.map((r) => ({ userId, seq: Number(r.seq), envelope: parsePayload(r.payload) }));
  }

  async retention(userId: string, afterSeq: number): Promise<RetentionState> {
    // One statement, so head and first retained come from one snapshot.
    const [row]: { head: number | string | null; first: number | string | null }[] = await this.ds.query(
      `SELECT
         (SELECT seq FROM outbox_user_seq WHERE user_id = ?) AS head,
         (SELECT seq FROM outbox WHERE user_id = ? AND seq > ? AND expires_at > NOW(3) ORDER BY seq LIMIT 1) AS first`,
      [userId, userId, afterSeq],
    );
    return {
      head: row.head === null ? 0 : Number(row.head),
      firstRetainedAfter: row.first === null ? null : Number(row.first),
    };
  }

  async purgeExpired(limit: number): Promise<number> {
    if (limit <= 0) return 0;
    // READ COMMITTED: the range delete takes no gap locks that could stall concurrent appends.
    return inTransaction(
      this.ds,
      async (qr) => {
        const result = await qr.query(
          `DELETE FROM outbox WHERE expires_at <= NOW(3) ORDER BY expires_at LIMIT ?`,
          [Math.floor(limit)],
          true,
        );
        return result.affected ?? 0;
      },
      { isolation: 'READ COMMITTED', retries: 2 },
    );
  }

  /**
   * Two primary-key lookups, no scan: rows is the id range (ids are allocated in insert order and the
   * purge removes old rows first, so the range stays close to the count), the age is the lowest id's.
   */
  async stats(): Promise<OutboxStats> {
    const [row]: { n: number | string | null; age_us: number | string | null }[] = await this.ds.query(
      `SELECT
         (SELECT MAX(id) - MIN(id) + 1 FROM outbox) AS n,
         (SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3)) FROM outbox ORDER BY id LIMIT 1) AS age_us`,
    );
    if (row.n === null || row.age_us === null) return { rows: 0, oldestAgeMs: null };
    return { rows: Number(row.n), oldestAgeMs: Math.max(0, Number(row.age_us) / 1000) };
  }

  async ping(): Promise<void> {
    await this.ds.query('SELECT 1');
  }
}

/** JSON columns come back as text on MariaDB and as parsed values on MySQL (mysql2 typecasts them). */
function parsePayload(raw: unknown): Envelope {
  if (typeof raw === 'string') return JSON.parse(raw) as Envelope;
  if (Buffer.isBuffer(raw)) return JSON.parse(raw.toString('utf8')) as Envelope;
  return raw as Envelope;
}
