import { DataSource } from 'typeorm';
import { MysqlOutboxDriver } from '../../src/outbox/drivers/mysql-outbox.driver';
import { ShardedOutboxDriver } from '../../src/outbox/drivers/sharded-outbox.driver';
import { jumpHash } from '../../src/outbox/sharding/shard-placement';
import { Envelope } from '../../src/protocol/envelope';
import { ContractDatabase, contractDatabase, MYSQL_SHARD_SERVER } from './backends';
import { outboxStoreContract } from './outbox-store.contract';

/**
 * The OutboxStore contract on the sharded outbox: two shards on two MariaDB instances (3306 and the
 * second mariadbd of `scripts/infra.sh mariadb-shards up`, started by the engines globalSetup), then
 * what only a sharded store has to get right: placement, one conversation order across shards, a
 * retry after one shard failed, and shards that do not belong.
 */
const RETENTION_SEC = 2;
const TABLES = ['outbox_delivery', 'outbox_entry', 'outbox_head'];

jest.setTimeout(60_000);

interface Shards {
  dbs: ContractDatabase[];
  pools: DataSource[];
}

let shared: Promise<Shards> | null = null;
function shards(): Promise<Shards> {
  shared ??= (async () => {
    const dbs = await Promise.all([
      contractDatabase('contract-shard0'),
      contractDatabase('contract-shard1', MYSQL_SHARD_SERVER),
    ]);
    return { dbs, pools: await Promise.all(dbs.map((d) => d.open())) };
  })();
  return shared;
}

async function truncate(pools: DataSource[]): Promise<void> {
  for (const ds of pools) for (const t of TABLES) await ds.query(`TRUNCATE TABLE ${t}`);
}

async function open(pools: DataSource[], retentionSec = 3600): Promise<ShardedOutboxDriver> {
  return ShardedOutboxDriver.open(pools.map((ds) => new MysqlOutboxDriver(ds, retentionSec)));
}

outboxStoreContract('sharded mysql, 2 instances', () => ({
  open: async () => {
    const { pools } = await shards();
    await truncate(pools);
    return open(pools);
  },
  peer: async () => {
    const { dbs } = await shards();
    return open(await Promise.all(dbs.map((d) => d.open(3))));
  },
  openExpiring: async () => {
    const { pools } = await shards();
    await truncate(pools);
    const store = await open(pools, RETENTION_SEC);
    return { store, expire: () => new Promise((r) => setTimeout(r, RETENTION_SEC * 1_000 + 100)) };
  },
  dispose: () => Promise.resolve(), // the databases serve the suite below too: dropped in afterAll
  oneWriterPerConversation: true, // see ShardedOutboxDriver, point 3
}));

afterAll(async () => {
  if (shared) await Promise.all((await shared).dbs.map((d) => d.dispose()));
});

const env = (id: string, conversation: string, from = 'alice'): Envelope => ({
  id,
  conversation_id: conversation,
  from,
  ts: 1_700_000_000_000,
  body: { text: id },
});

/** Users that land on shard 0 and on shard 1 (placement is a pure function of the id). */
function usersOn(shard: number, n: number, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if (jumpHash(`${prefix}${i}`, 2) === shard) out.push(`${prefix}${i}`);
  return out;
}

describe('sharded outbox: placement and cross-shard order', () => {
  let pools: DataSource[];
  beforeAll(async () => {
    ({ pools } = await shards());
  });
  beforeEach(() => truncate(pools));

  const rowsOn = async (shard: number, sql: string, params: unknown[] = []) =>
    (await pools[shard].query(sql, params)) as Record<string, unknown>[];

  it("writes each user's deliveries and head on that user's shard only", async () => {
    const store = await open(pools);
    const [a0, b0] = usersOn(0, 2, 'p');
    const [a1, b1] = usersOn(1, 2, 'p');
    await store.append([a0, b0, a1, b1].map((userId) => ({ userId, envelope: env('m1', 'conv') })));
    for (const [shard, mine, theirs] of [
      [0, [a0, b0], [a1, b1]],
      [1, [a1, b1], [a0, b0]],
    ] as const) {
      const users = (
        await rowsOn(shard, 'SELECT DISTINCT user_id FROM outbox_delivery ORDER BY user_id')
      ).map((r) => r.user_id);
      expect(users).toEqual([...mine].sort());
      const heads = await rowsOn(shard, "SELECT id FROM outbox_head WHERE scope = 'u' AND id IN (?, ?)", [
        ...theirs,
      ]);
      expect(heads).toEqual([]);
    }
    expect((await store.readAfter(a1, 0, 10)).map((d) => d.envelope.id)).toEqual(['m1']);
  });

  it("gives a message one conversation seq on every shard, kept from its conversation's home shard", async () => {
    const store = await open(pools);
    const [u0] = usersOn(0, 1, 'q');
    const [u1] = usersOn(1, 1, 'q');
    for (let i = 1; i <= 5; i++) {
      const stored = await store.append([
        { userId: u0, envelope: env(`m${i}`, 'room') },
        { userId: u1, envelope: env(`m${i}`, 'room') },
      ]);
      expect(stored.map((d) => (d.envelope as Envelope).seq)).toEqual([i, i]);
    }
    const home = jumpHash('room', 2);
    const heads = await rowsOn(home, "SELECT seq FROM outbox_head WHERE scope = 'c' AND id = 'room'");
    expect(heads.map((r) => Number(r.seq))).toEqual([5]);
    const other = await rowsOn(1 - home, "SELECT seq FROM outbox_head WHERE scope = 'c'");
    expect(other).toEqual([]); // only the home shard allocates
    for (const u of [u0, u1]) {
      expect((await store.readAfter(u, 0, 10)).map((d) => (d.envelope as Envelope).seq)).toEqual([
        1, 2, 3, 4, 5,
      ]);
    }
    expect((await store.conversationHeads(['room', 'none'])).get('room')).toBe(5);
    expect(await store.senders('room', 0, 5, 10)).toEqual(['alice']);
  });

  it('retries a batch after one shard failed: the same seqs everywhere, no gap, nothing twice', async () => {
    const drivers = pools.map((ds) => new MysqlOutboxDriver(ds, 3600));
    const store = await ShardedOutboxDriver.open(drivers);
    const [u0] = usersOn(0, 1, 'r');
    const [u1] = usersOn(1, 1, 'r');
    const batch = [1, 2, 3].flatMap((i) => [
      { userId: u0, envelope: env(`x${i}`, 'retry-room') },
      { userId: u1, envelope: env(`x${i}`, 'retry-room') },
    ]);
    const real = drivers[1].appendSequenced.bind(drivers[1]);
    const failing = jest
      .spyOn(drivers[1], 'appendSequenced')
      .mockRejectedValueOnce(new Error('shard 1 down'));
    await expect(store.append(batch)).rejects.toThrow('shard 1 down');
    failing.mockImplementation(real);
    const stored = await store.append(batch); // the router's redelivery of the same batch
    expect(stored.map((d) => [d.userId, d.seq, (d.envelope as Envelope).seq])).toEqual([
      [u0, 1, 1],
      [u1, 1, 1],
      [u0, 2, 2],
      [u1, 2, 2],
      [u0, 3, 3],
      [u1, 3, 3],
    ]);
    const next = await store.append([{ userId: u1, envelope: env('x4', 'retry-room') }]);
    expect([next[0].seq, (next[0].envelope as Envelope).seq]).toEqual([4, 4]);
    for (const [shard, user] of [
      [0, u0],
      [1, u1],
    ] as const) {
      const rows = await rowsOn(shard, 'SELECT COUNT(*) AS n FROM outbox_delivery WHERE user_id = ?', [user]);
      expect(Number(rows[0].n)).toBe(shard === 1 ? 4 : 3);
    }
  });

  it('skips the delivery lookup for messages its home shard just stored, and falls back to it when a concurrent writer got there first', async () => {
    const driver = new MysqlOutboxDriver(pools[0], 3600);
    await driver.init();
    const [u] = usersOn(0, 1, 's');
    const m = env('fresh-1', 'fresh-room');
    const sequenced = await driver.sequence([m]);
    expect(sequenced.get('fresh-1')).toEqual({ seq: 1, stored: true });
    expect((await driver.sequence([m])).get('fresh-1')).toEqual({ seq: 1, stored: false });
    // A concurrent writer (a partition handed over) delivers it first...
    const first = await driver.appendSequenced([{ userId: u, envelope: { ...m, seq: 1 } }]);
    // ...and this writer, told the message is fresh, must still return that delivery, not a second one.
    const again = await driver.appendSequenced(
      [{ userId: u, envelope: { ...m, seq: 1 } }],
      new Set(['fresh-1']),
    );
    expect(again.map((d) => d.seq)).toEqual(first.map((d) => d.seq));
    const rows = await rowsOn(0, 'SELECT COUNT(*) AS n FROM outbox_delivery WHERE user_id = ?', [u]);
    expect(Number(rows[0].n)).toBe(1);
  });

  it('refuses a shard of another outbox, and an empty shard joining a store that holds user logs', async () => {
    const store = await open(pools);
    await store.append([{ userId: 'someone', envelope: env('m1', 'c') }]);
    const { dbs } = await shards();
    const stranger = await contractDatabase('contract-shard-stranger', MYSQL_SHARD_SERVER);
    try {
      const strangerPool = await stranger.open();
      // An empty database with no epoch: joining now would strand the users it is placed.
      await expect(open([pools[0], strangerPool])).rejects.toThrow(/no outbox epoch .*outbox:reshard/);
      // A database initialised as another store has its own epoch.
      await new MysqlOutboxDriver(strangerPool, 3600).init('another-epoch');
      await expect(open([pools[0], strangerPool])).rejects.toThrow(/belongs to another outbox/);
      // The configured pair still opens, with the first shard's epoch.
      expect((await open(await Promise.all(dbs.map((d) => d.open(1))))).epoch()).toBe(store.epoch());
    } finally {
      await stranger.dispose();
    }
  });
});
