import { DataSource } from 'typeorm';
import { chunks, list, repeat } from '../../database/transaction';
import { ShardPlacement } from './shard-placement';

/**
 * Moving outbox data when OUTBOX_SHARDS changes (docs/scaling.md, "Adding a shard").
 *
 * Invariants and preconditions:
 * - No router writes while it runs (routers stopped: the bus keeps every message, acks go on). Gateways
 *   may keep serving from the old shards: `copy` only adds rows, so every user's log stays whole where
 *   the old placement looks for it.
 * - `copy` puts each user whose shard changes (head, deliveries, the entries they point at) and each
 *   conversation whose home shard changes (head, its messages) on the new shard, with the same seqs,
 *   conversation seqs, timestamps and expiry. It is idempotent (INSERT IGNORE; heads take the max), so
 *   an interrupted run is simply run again. New shards get the store's epoch, so cursors stay valid.
 * - Then gateways and routers restart on the new OUTBOX_SHARDS, and only then `cleanup` deletes from
 *   each shard what the new placement puts elsewhere (an entry only once no delivery on that shard
 *   points at it and its conversation is not homed there).
 */

export interface ReshardReport {
  users: number;
  conversations: number;
  deliveries: number;
  entries: number;
}

const EPOCH_KEY = 'outbox_epoch';
// Instants as epoch seconds (with ms), so two servers in different time zones copy them exactly.
const TIMES = 'UNIX_TIMESTAMP(created_at) AS created_at, UNIX_TIMESTAMP(expires_at) AS expires_at';
const TIMES_IN = 'FROM_UNIXTIME(?), FROM_UNIXTIME(?)';
const USERS_PER_ROUND = 500;

type Row = Record<string, unknown>;

export class Resharder {
  private readonly before: ShardPlacement;
  private readonly after: ShardPlacement;

  /** `from[i]` and `to[j]` are the pools of the old and new OUTBOX_SHARDS, in their order; a shard in both is the same pool. */
  constructor(
    private readonly from: DataSource[],
    private readonly to: DataSource[],
    /** Head ids read per page (and users copied or deleted per round). */
    private readonly pageSize = USERS_PER_ROUND,
  ) {
    this.before = new ShardPlacement(from.length);
    this.after = new ShardPlacement(to.length);
  }

  /** Gives every new shard the store's epoch (refusing a shard of another store), then copies what moves. */
  async copy(): Promise<ReshardReport> {
    const epoch = await readEpoch(this.from[0]);
    if (epoch === null) throw new Error('the first old shard has no outbox epoch: nothing to reshard');
    for (const [j, ds] of this.to.entries()) {
      await ds.query(
        `INSERT INTO relay_meta (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE name = name`,
        [EPOCH_KEY, epoch],
      );
      const got = await readEpoch(ds);
      if (got !== epoch)
        throw new Error(`new shard ${j} belongs to another outbox (epoch ${got}, expected ${epoch})`);
    }
    const report: ReshardReport = { users: 0, conversations: 0, deliveries: 0, entries: 0 };
    for (const [i, source] of this.from.entries()) {
      for (const scope of ['u', 'c'] as const) {
        for await (const ids of headIds(source, scope, this.pageSize)) {
          // Only what this shard owns under the old placement (a half-cleaned earlier run may leave copies).
          const part = ids.filter(
            (id) => this.before.shardOf(id) === i && this.to[this.after.shardOf(id)] !== source,
          );
          if (part.length === 0) continue;
          const byTarget = new Map<number, string[]>();
          for (const id of part) {
            const j = this.after.shardOf(id);
            const group = byTarget.get(j);
            if (group) group.push(id);
            else byTarget.set(j, [id]);
          }
          for (const [j, group] of byTarget) {
            const moved =
              scope === 'u'
                ? await this.copyUsers(source, this.to[j], group)
                : await this.copyConversations(source, this.to[j], group);
            report.deliveries += moved.deliveries;
            report.entries += moved.entries;
          }
          if (scope === 'u') report.users += part.length;
          else report.conversations += part.length;
        }
      }
    }
    return report;
  }

  /** Deletes from every new shard the users, conversations and entries the new placement puts elsewhere. */
  async cleanup(): Promise<ReshardReport> {
    const report: ReshardReport = { users: 0, conversations: 0, deliveries: 0, entries: 0 };
    for (const [j, ds] of this.to.entries()) {
      for (const scope of ['u', 'c'] as const) {
        for await (const ids of headIds(ds, scope, this.pageSize)) {
          const part = ids.filter((id) => this.after.shardOf(id) !== j);
          if (part.length === 0) continue;
          if (scope === 'u') {
            const res = (await ds.query(
              `DELETE FROM outbox_delivery WHERE user_id IN (${list(part.length)})`,
              part,
            )) as {
              affectedRows?: number;
            };
            report.deliveries += res.affectedRows ?? 0;
            report.users += part.length;
          } else report.conversations += part.length;
          await ds.query(`DELETE FROM outbox_head WHERE scope = ? AND id IN (${list(part.length)})`, [
            scope,
            ...part,
          ]);
        }
      }
      // Entries no delivery here points at, of conversations homed elsewhere.
      const orphans = (await ds.query(
        `SELECT DISTINCT e.conversation_id AS c FROM outbox_entry e
         LEFT JOIN outbox_delivery d ON d.entry_id = e.entry_id WHERE d.entry_id IS NULL`,
      )) as { c: string }[];
      const elsewhere = orphans.map((r) => r.c).filter((c) => this.after.shardOf(c) !== j);
      for (const part of chunks(elsewhere, USERS_PER_ROUND)) {
        const res = (await ds.query(
          `DELETE e FROM outbox_entry e LEFT JOIN outbox_delivery d ON d.entry_id = e.entry_id
           WHERE d.entry_id IS NULL AND e.conversation_id IN (${list(part.length)})`,
          part,
        )) as { affectedRows?: number };
        report.entries += res.affectedRows ?? 0;
      }
    }
    return report;
  }

  private async copyUsers(
    source: DataSource,
    target: DataSource,
    users: string[],
  ): Promise<{ deliveries: number; entries: number }> {
    const deliveries = (await source.query(
      `SELECT user_id, seq, entry_id, ${TIMES} FROM outbox_delivery WHERE user_id IN (${list(users.length)})`,
      users,
    )) as Row[];
    const entryIds = [...new Set(deliveries.map((d) => d.entry_id as string))];
    const entries = await this.copyEntries(source, target, 'entry_id', entryIds);
    for (const part of chunks(deliveries, 1000)) {
      await target.query(
        `INSERT IGNORE INTO outbox_delivery (user_id, seq, entry_id, created_at, expires_at) VALUES ${repeat(`(?, ?, ?, ${TIMES_IN})`, part.length)}`,
        part.flatMap((d) => [d.user_id, d.seq, d.entry_id, d.created_at, d.expires_at]),
      );
    }
    await copyHeads(source, target, 'u', users);
    return { deliveries: deliveries.length, entries };
  }

  private async copyConversations(
    source: DataSource,
    target: DataSource,
    conversations: string[],
  ): Promise<{ deliveries: number; entries: number }> {
    const entries = await this.copyEntries(source, target, 'conversation_id', conversations);
    await copyHeads(source, target, 'c', conversations);
    return { deliveries: 0, entries };
  }

  /** Copies the entries whose `column` is in `values` (messages keep their conversation seq). */
  private async copyEntries(
    source: DataSource,
    target: DataSource,
    column: 'entry_id' | 'conversation_id',
    values: string[],
  ): Promise<number> {
    let n = 0;
    for (const part of chunks(values, 1000)) {
      const rows = (await source.query(
        `SELECT entry_id, conversation_id, conv_seq, sender, payload, ${TIMES} FROM outbox_entry WHERE ${column} IN (${list(part.length)})`,
        part,
      )) as Row[];
      for (const batch of chunks(rows, 500)) {
        await target.query(
          `INSERT IGNORE INTO outbox_entry (entry_id, conversation_id, conv_seq, sender, payload, created_at, expires_at) VALUES ${repeat(`(?, ?, ?, ?, ?, ${TIMES_IN})`, batch.length)}`,
          batch.flatMap((e) => [
            e.entry_id,
            e.conversation_id,
            e.conv_seq,
            e.sender,
            e.payload,
            e.created_at,
            e.expires_at,
          ]),
        );
      }
      n += rows.length;
    }
    return n;
  }
}

/**
 * A shard's head ids of one scope, `pageSize` at a time in id order (keyset pages: memory stays
 * bounded however many users a shard holds, and deleting rows of a page already read is safe).
 */
async function* headIds(ds: DataSource, scope: 'u' | 'c', pageSize: number): AsyncGenerator<string[]> {
  let after = '';
  for (;;) {
    const rows = (await ds.query(
      `SELECT id FROM outbox_head WHERE scope = ? AND id > ? ORDER BY id LIMIT ?`,
      [scope, after, pageSize],
    )) as { id: string }[];
    if (rows.length === 0) return;
    yield rows.map((r) => r.id);
    after = rows[rows.length - 1].id;
    if (rows.length < pageSize) return;
  }
}

async function readEpoch(ds: DataSource): Promise<string | null> {
  const rows = (await ds.query(`SELECT value FROM relay_meta WHERE name = ?`, [EPOCH_KEY])) as {
    value: string;
  }[];
  return rows[0]?.value ?? null;
}

async function copyHeads(
  source: DataSource,
  target: DataSource,
  scope: 'u' | 'c',
  ids: string[],
): Promise<void> {
  const heads = (await source.query(
    `SELECT id, seq FROM outbox_head WHERE scope = ? AND id IN (${list(ids.length)})`,
    [scope, ...ids],
  )) as { id: string; seq: number }[];
  if (heads.length === 0) return;
  await target.query(
    `INSERT INTO outbox_head (scope, id, seq) VALUES ${repeat('(?, ?, ?)', heads.length)} ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))`,
    heads.flatMap((h) => [scope, h.id, h.seq]),
  );
}
