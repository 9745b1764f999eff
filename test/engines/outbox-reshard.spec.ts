import { DataSource } from 'typeorm';
import { MysqlOutboxDriver } from '../../src/outbox/drivers/mysql-outbox.driver';
import { ShardedOutboxDriver } from '../../src/outbox/drivers/sharded-outbox.driver';
import { OutboxStore } from '../../src/outbox/outbox.store';
import { Resharder } from '../../src/outbox/sharding/reshard';
import { jumpHash } from '../../src/outbox/sharding/shard-placement';
import { Envelope } from '../../src/protocol/envelope';
import { ContractDatabase, contractDatabase, MYSQL_SHARD_SERVER } from '../contracts/backends';

/**
 * `npm run outbox:reshard`: one outbox database grows to two shards on two MariaDB instances. After
 * `copy`, the sharded store over both answers every user exactly what the single database did (seqs,
 * conversation seqs, heads, epoch) and appends continue gapless; `cleanup` then leaves each user's
 * rows on that user's shard only, and nothing changes for the readers.
 */
jest.setTimeout(60_000);

const USERS = Array.from({ length: 40 }, (_, i) => `user-${i}`);
const CONVERSATIONS = Array.from({ length: 10 }, (_, i) => `conv-${i}`);

const message = (id: string, conversation: string): Envelope => ({
  id,
  conversation_id: conversation,
  from: USERS[0],
  ts: 1_700_000_000_000,
  body: { id },
});

/** Every user's log as (seq, message id, conversation seq), the heads and the epoch. */
async function snapshot(store: OutboxStore) {
  const logs: Record<string, [number, string, number | undefined][]> = {};
  for (const u of USERS) {
    logs[u] = (await store.readAfter(u, 0, 1000)).map((d) => [
      d.seq,
      d.envelope.id,
      (d.envelope as Envelope).seq,
    ]);
  }
  const retention = await Promise.all(USERS.map((u) => store.retention(u, 0)));
  return {
    epoch: store.epoch(),
    logs,
    retention,
    heads: Object.fromEntries(await store.conversationHeads(CONVERSATIONS)),
    senders: await store.senders('conv-3', 0, 100, 100),
  };
}

describe('outbox:reshard from one database to two shards on two MariaDB instances', () => {
  let dbs: ContractDatabase[];
  let a: DataSource, b: DataSource;

  beforeAll(async () => {
    dbs = await Promise.all([
      contractDatabase('reshard-a'),
      contractDatabase('reshard-b', MYSQL_SHARD_SERVER),
    ]);
    [a, b] = await Promise.all(dbs.map((d) => d.open()));
  });
  afterAll(async () => {
    await Promise.all((dbs ?? []).map((d) => d.dispose()));
  });

  const count = async (ds: DataSource, sql: string) =>
    Number(((await ds.query(sql)) as { n: unknown }[])[0].n);

  it('copies what moves, keeps every log and order number, and cleans up afterwards', async () => {
    const single = await new MysqlOutboxDriver(a, 3600).init();
    for (let m = 0; m < 60; m++) {
      const conversation = CONVERSATIONS[m % CONVERSATIONS.length];
      const recipients = [0, 1, 2, 3].map((k) => USERS[(m * 7 + k * 11) % USERS.length]);
      await single.append(recipients.map((userId) => ({ userId, envelope: message(`m${m}`, conversation) })));
    }
    const before = await snapshot(single);

    const resharder = new Resharder([a], [a, b], 7); // pages of 7 ids: several per shard
    const copied = await resharder.copy();
    const moving = USERS.filter((u) => jumpHash(u, 2) === 1);
    expect(copied.users).toBe(moving.length);
    expect(copied.conversations).toBe(CONVERSATIONS.filter((c) => jumpHash(c, 2) === 1).length);
    expect(await resharder.copy()).toEqual(copied); // idempotent: a second run changes nothing
    expect(await count(b, 'SELECT COUNT(*) AS n FROM outbox_delivery')).toBe(
      moving.reduce((n, u) => n + before.logs[u].length, 0),
    );

    const sharded = await ShardedOutboxDriver.open([
      new MysqlOutboxDriver(a, 3600),
      new MysqlOutboxDriver(b, 3600),
    ]);
    expect(await snapshot(sharded)).toEqual(before);

    // Appends continue where each log and each conversation stopped.
    const [u0] = USERS.filter((u) => jumpHash(u, 2) === 0);
    const [u1] = moving;
    const stored = await sharded.append([
      { userId: u0, envelope: message('after', 'conv-3') },
      { userId: u1, envelope: message('after', 'conv-3') },
    ]);
    expect(stored.map((d) => d.seq)).toEqual([before.logs[u0].length + 1, before.logs[u1].length + 1]);
    expect(stored.map((d) => (d.envelope as Envelope).seq)).toEqual([
      before.heads['conv-3'] + 1,
      before.heads['conv-3'] + 1,
    ]);
    const afterAppend = await snapshot(sharded);

    const cleaned = await resharder.cleanup();
    expect(cleaned.users).toBe(moving.length);
    expect(await snapshot(sharded)).toEqual(afterAppend);
    const usersOn = async (ds: DataSource) =>
      (
        (await ds.query('SELECT DISTINCT user_id FROM outbox_delivery ORDER BY user_id')) as {
          user_id: string;
        }[]
      ).map((r) => r.user_id);
    expect(await usersOn(a)).toEqual(
      USERS.filter((u) => jumpHash(u, 2) === 0 && before.logs[u].length > 0).sort(),
    );
    expect(await usersOn(b)).toEqual(moving.filter((u) => before.logs[u].length > 0).sort());
  });

  it('refuses a new shard that belongs to another outbox', async () => {
    const stranger = await contractDatabase('reshard-stranger', MYSQL_SHARD_SERVER);
    try {
      const ds = await stranger.open();
      await new MysqlOutboxDriver(ds, 3600).init('not-this-store');
      await expect(new Resharder([a], [a, ds]).copy()).rejects.toThrow(/belongs to another outbox/);
    } finally {
      await stranger.dispose();
    }
  });
});
