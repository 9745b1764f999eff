import { OnApplicationShutdown } from '@nestjs/common';
import { isReceiptEntry, OutboxEntry } from '../../protocol/outbox-entry';
import { RetentionState } from '../cursor';
import { NewDelivery, OutboxStats, OutboxStore, StoredDelivery } from '../outbox.store';
import { ShardPlacement } from '../sharding/shard-placement';
import { MysqlOutboxDriver } from './mysql-outbox.driver';

/** What this store needs of each shard (MysqlOutboxDriver on its own database). */
export type OutboxShard = Pick<
  MysqlOutboxDriver,
  | 'epoch'
  | 'sequence'
  | 'appendSequenced'
  | 'readAfter'
  | 'retention'
  | 'conversationHeads'
  | 'senders'
  | 'purgeExpired'
  | 'stats'
  | 'ping'
>;

/**
 * The outbox over N MySQL/MariaDB instances (OUTBOX_SHARDS). A user's deliveries, head and seqs live
 * on the user's shard; a conversation's order numbers (its head, and every message once, for
 * `senders`) on the conversation's home shard. Both are `ShardPlacement` (jump hash) of the id.
 *
 * How the OutboxStore contract holds across shards (each shard keeps it for itself, see
 * MysqlOutboxDriver):
 * 1. Conversation seqs first: `append` gives the batch's messages their numbers on their home shards
 *    (`sequence`, one transaction per shard, shards in parallel) before any delivery is written, so
 *    every shard stores a message with the same number. `sequence` is idempotent (a stored message
 *    keeps its number), so a retry after a partial failure finds the same numbers.
 * 2. Then the deliveries, one `appendSequenced` per user shard, shards in parallel. Each is atomic
 *    and idempotent on its shard; the call as a whole is not atomic: when one shard fails the call
 *    fails, the caller (the router) retries the whole batch, the shards that committed return their
 *    existing seqs, and the others write theirs. Per user nothing changes: one user, one shard, one
 *    transaction, gapless commit-ordered seqs.
 * 3. Commit order per conversation: a conversation's messages reach the store from one bus partition,
 *    one batch at a time, and a batch's deliveries are all written before the next batch is
 *    sequenced; so a member's log follows the conversation's order, as on one database.
 * 4. One epoch for all shards (the first shard's); a shard joining a store that already holds user
 *    logs must come in through `npm run outbox:reshard` (which moves the users it now owns), never
 *    by editing OUTBOX_SHARDS alone: `ShardedOutboxDriver.open` refuses it.
 */
export class ShardedOutboxDriver extends OutboxStore implements OnApplicationShutdown {
  private readonly placement: ShardPlacement;

  constructor(
    private readonly shards: OutboxShard[],
    /** Closes what the shards run on (their pools), once the application has shut down. */
    private readonly close: () => Promise<unknown> = () => Promise.resolve(),
  ) {
    super();
    if (shards.length === 0) throw new Error('a sharded outbox needs at least one shard');
    this.placement = new ShardPlacement(shards.length);
  }

  /**
   * Initialises every shard with the first shard's epoch. A shard without an epoch may join only a
   * store that holds no user log yet (a new deployment); otherwise the store would hand the users
   * placed on it an empty log while their deliveries sit on another shard.
   */
  static async open(
    drivers: MysqlOutboxDriver[],
    close?: () => Promise<unknown>,
  ): Promise<ShardedOutboxDriver> {
    const [first, ...rest] = drivers;
    if (!first) throw new Error('a sharded outbox needs at least one shard');
    const before = await Promise.all(rest.map((d) => d.storedEpoch().catch(() => null)));
    await first.init();
    const epoch = first.epoch();
    const isNew = (await Promise.all(drivers.map((d) => d.isEmpty().catch(() => true)))).every(Boolean);
    await Promise.all(
      rest.map(async (d, i) => {
        if (before[i] === null && !isNew) {
          throw new Error(
            `outbox shard ${i + 1} has no outbox epoch but the store already holds user logs: add shards with \`npm run outbox:reshard\` (docs/scaling.md), not by editing OUTBOX_SHARDS alone`,
          );
        }
        await d.init(epoch);
        if (d.epoch() !== epoch) {
          throw new Error(
            `outbox shard ${i + 1} belongs to another outbox (epoch ${d.epoch()}, shard 0 has ${epoch}): check OUTBOX_SHARDS and its order`,
          );
        }
      }),
    );
    return new ShardedOutboxDriver(drivers, close);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  get shardCount(): number {
    return this.shards.length;
  }

  /** The shard index of a user's log (tools and tests). */
  shardOfUser(userId: string): number {
    return this.placement.shardOf(userId);
  }

  epoch(): string {
    return this.shards[0].epoch();
  }

  async append(deliveries: NewDelivery[]): Promise<StoredDelivery[]> {
    if (deliveries.length === 0) return [];
    // (1) Conversation order numbers on the home shards.
    const messagesByHome = new Map<number, Map<string, OutboxEntry>>();
    for (const { envelope } of deliveries) {
      if (isReceiptEntry(envelope)) continue;
      const home = this.placement.shardOf(envelope.conversation_id);
      let group = messagesByHome.get(home);
      if (!group) messagesByHome.set(home, (group = new Map()));
      if (!group.has(envelope.id)) group.set(envelope.id, envelope);
    }
    const convSeqs = new Map<string, number>();
    const freshOn = new Map<number, Set<string>>(); // per home shard: messages its `sequence` just stored
    await Promise.all(
      [...messagesByHome].map(async ([home, messages]) => {
        const fresh = new Set<string>();
        for (const [id, { seq, stored }] of await this.shards[home].sequence([...messages.values()])) {
          convSeqs.set(id, seq);
          if (stored) fresh.add(id);
        }
        freshOn.set(home, fresh);
      }),
    );
    // (2) Deliveries on the users' shards, each shard's in input order.
    const byShard = new Map<number, { index: number[]; deliveries: NewDelivery[] }>();
    deliveries.forEach(({ userId, envelope }, i) => {
      const shard = this.placement.shardOf(userId);
      let group = byShard.get(shard);
      if (!group) byShard.set(shard, (group = { index: [], deliveries: [] }));
      group.index.push(i);
      group.deliveries.push({
        userId,
        envelope: isReceiptEntry(envelope) ? envelope : { ...envelope, seq: convSeqs.get(envelope.id)! },
      });
    });
    const out = new Array<StoredDelivery>(deliveries.length);
    await Promise.all(
      [...byShard].map(async ([shard, group]) => {
        const stored = await this.shards[shard].appendSequenced(group.deliveries, freshOn.get(shard));
        stored.forEach((d, j) => (out[group.index[j]] = d));
      }),
    );
    return out;
  }

  readAfter(userId: string, afterSeq: number, limit: number): Promise<StoredDelivery[]> {
    return this.userShard(userId).readAfter(userId, afterSeq, limit);
  }

  retention(userId: string, afterSeq: number): Promise<RetentionState> {
    return this.userShard(userId).retention(userId, afterSeq);
  }

  async conversationHeads(conversationIds: string[]): Promise<Map<string, number>> {
    const byHome = new Map<number, string[]>();
    for (const id of new Set(conversationIds)) {
      const home = this.placement.shardOf(id);
      const group = byHome.get(home);
      if (group) group.push(id);
      else byHome.set(home, [id]);
    }
    const out = new Map<string, number>();
    await Promise.all(
      [...byHome].map(async ([home, ids]) => {
        for (const [id, seq] of await this.shards[home].conversationHeads(ids)) out.set(id, seq);
      }),
    );
    for (const id of conversationIds) if (!out.has(id)) out.set(id, 0);
    return out;
  }

  senders(conversationId: string, afterSeq: number, uptoSeq: number, limit: number): Promise<string[]> {
    return this.shards[this.placement.shardOf(conversationId)].senders(
      conversationId,
      afterSeq,
      uptoSeq,
      limit,
    );
  }

  /**
   * Up to `limit` in all, shard after shard: a full chunk means "call again" to the purge loop, which
   * therefore drains every shard before it stops.
   */
  async purgeExpired(limit: number): Promise<number> {
    let total = 0;
    for (const shard of this.shards) {
      if (total >= limit) break;
      total += await shard.purgeExpired(limit - total);
    }
    return total;
  }

  async stats(): Promise<OutboxStats> {
    const all = await Promise.all(this.shards.map((s) => s.stats()));
    const ages = all.map((s) => s.oldestAgeMs).filter((a): a is number => a !== null);
    return {
      rows: all.reduce((n, s) => n + s.rows, 0),
      oldestAgeMs: ages.length === 0 ? null : Math.max(...ages),
    };
  }

  /** Every shard must answer: a user whose shard is down can neither be written nor replayed. */
  async ping(): Promise<void> {
    await Promise.all(
      this.shards.map((s, i) =>
        s.ping().catch((err: unknown) => {
          throw new Error(`outbox shard ${i}: ${(err as Error).message}`);
        }),
      ),
    );
  }

  private userShard(userId: string): OutboxShard {
    return this.shards[this.placement.shardOf(userId)];
  }
}
