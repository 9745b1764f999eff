import { DataSource } from 'typeorm';
import { createDataSource } from '../../src/database/data-source';
import { runMigrationsLocked } from '../../src/database/migrate';
import { inTransaction } from '../../src/database/transaction';
import { planResume } from '../../src/outbox/cursor';
import { MysqlOutboxDriver } from '../../src/outbox/drivers/mysql-outbox.driver';
import { NewDelivery, StoredDelivery } from '../../src/outbox/outbox.store';
import { Envelope } from '../../src/protocol/envelope';
import { waitFor } from '../support/wait-for';
import { ensureDatabase } from '../support/backends';

/**
 * MysqlOutboxDriver against the real MariaDB of scripts/infra.sh (engines project globalSetup), in
 * database relay_test; the outbox tables are emptied before every test.
 */
const TEST_URL = process.env.RELAY_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/relay_test';
const LONG = 3600;

jest.setTimeout(60_000);

async function open(poolSize = 10): Promise<DataSource> {
  const ds = createDataSource(TEST_URL, { poolSize });
  await ds.initialize();
  return ds;
}

function env(id: string, body: unknown = { text: `hello ${id}` }): Envelope {
  return { id, conversation_id: 'c1', from: 'alice', ts: 1_700_000_000_000, body };
}

const seqs = (stored: StoredDelivery[]) => stored.map((d) => d.seq);

let ds: DataSource;
let outbox: MysqlOutboxDriver;

beforeAll(async () => {
  await ensureDatabase(TEST_URL);
  ds = await open();
  await runMigrationsLocked(ds);
  outbox = await new MysqlOutboxDriver(ds, LONG).init();
});

afterAll(async () => {
  await ds?.destroy();
});

beforeEach(async () => {
  await ds.query('TRUNCATE TABLE outbox_delivery');
  await ds.query('TRUNCATE TABLE outbox_entry');
  await ds.query('TRUNCATE TABLE outbox_head');
});

async function rowsOf(userId: string): Promise<{ seq: number; message_id: string }[]> {
  const rows: { seq: number; message_id: string }[] = await ds.query(
    'SELECT seq, entry_id AS message_id FROM outbox_delivery WHERE user_id = ? ORDER BY seq',
    [userId],
  );
  return rows.map((r) => ({ seq: Number(r.seq), message_id: r.message_id }));
}

async function countRows(): Promise<number> {
  const [{ n }]: { n: number | string }[] = await ds.query('SELECT COUNT(*) AS n FROM outbox_delivery');
  return Number(n);
}

describe('MysqlOutboxDriver', () => {
  it('has an epoch that is created once and shared by every driver on the database', async () => {
    expect(outbox.epoch()).toMatch(/^[0-9a-f]{16}$/);
    const other = await new MysqlOutboxDriver(ds, LONG).init();
    expect(other.epoch()).toBe(outbox.epoch());
    await expect(outbox.ping()).resolves.toBeUndefined();
  });

  it('assigns gapless per-user seqs in input order and returns them in input order', async () => {
    const stored = await outbox.append([
      { userId: 'a', envelope: env('m1') },
      { userId: 'b', envelope: env('m1') },
      { userId: 'a', envelope: env('m2') },
      { userId: 'a', envelope: env('m3') },
      { userId: 'b', envelope: env('m2') },
    ]);
    expect(stored.map((d) => [d.userId, d.envelope.id, d.seq])).toEqual([
      ['a', 'm1', 1],
      ['b', 'm1', 1],
      ['a', 'm2', 2],
      ['a', 'm3', 3],
      ['b', 'm2', 2],
    ]);
    expect(seqs(await outbox.append([{ userId: 'a', envelope: env('m4') }]))).toEqual([4]);
    expect((await rowsOf('a')).map((r) => r.message_id)).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(await outbox.append([])).toEqual([]);
  });

  it('is idempotent: a repeated append returns the original seqs and writes nothing new', async () => {
    const batch: NewDelivery[] = [
      { userId: 'a', envelope: env('m1') },
      { userId: 'b', envelope: env('m1') },
      { userId: 'a', envelope: env('m2') },
    ];
    const first = await outbox.append(batch);
    expect(await countRows()).toBe(3);

    const again = await outbox.append(batch);
    expect(seqs(again)).toEqual(seqs(first));
    expect(await countRows()).toBe(3);

    // A redelivered batch that overlaps new work: old ones keep their seqs, new ones continue.
    const mixed = await outbox.append([
      { userId: 'a', envelope: env('m3') },
      { userId: 'a', envelope: env('m2') },
      { userId: 'c', envelope: env('m2') },
    ]);
    expect(seqs(mixed)).toEqual([3, 2, 1]);
    expect(await countRows()).toBe(5);
    expect(await outbox.retention('a', 0)).toEqual({ head: 3, firstRetainedAfter: 1 });
  });

  it('folds the same (user, message) repeated inside one call into one delivery', async () => {
    const stored = await outbox.append([
      { userId: 'a', envelope: env('m1') },
      { userId: 'a', envelope: env('m2') },
      { userId: 'a', envelope: env('m1') },
    ]);
    expect(seqs(stored)).toEqual([1, 2, 1]);
    expect(await rowsOf('a')).toEqual([
      { seq: 1, message_id: 'm1' },
      { seq: 2, message_id: 'm2' },
    ]);
  });

  it('stores the envelope verbatim and reads it back in seq order', async () => {
    const e = env('m1', { text: 'héllo 👋 "quoted" \\ back', nested: { n: [1, 2.5, null, true] } });
    await outbox.append([{ userId: 'a', envelope: e }]);
    const [read] = await outbox.readAfter('a', 0, 10);
    expect(read).toEqual({ userId: 'a', seq: 1, envelope: { ...e, seq: 1 } });
  });

  it('treats user ids byte-exactly: case and trailing spaces make different users', async () => {
    await outbox.append([
      { userId: 'alice', envelope: env('m1') },
      { userId: 'Alice', envelope: env('m1') },
      { userId: 'alice ', envelope: env('m1') },
      { userId: 'alice', envelope: env('m2') },
    ]);
    expect((await outbox.readAfter('alice', 0, 10)).map((d) => d.seq)).toEqual([1, 2]);
    expect((await outbox.readAfter('Alice', 0, 10)).map((d) => d.seq)).toEqual([1]);
    expect((await outbox.readAfter('alice ', 0, 10)).map((d) => d.seq)).toEqual([1]);
    expect(await countRows()).toBe(4);
  });

  it('pages through readAfter in seq order', async () => {
    await outbox.append(Array.from({ length: 25 }, (_, i) => ({ userId: 'a', envelope: env(`m${i + 1}`) })));
    await outbox.append([{ userId: 'b', envelope: env('other') }]);
    const pages: number[][] = [];
    let after = 0;
    for (;;) {
      const page = await outbox.readAfter('a', after, 10);
      if (page.length === 0) break;
      pages.push(seqs(page));
      expect(page.map((d) => d.envelope.id)).toEqual(page.map((d) => `m${d.seq}`));
      after = page[page.length - 1].seq;
    }
    expect(pages.map((p) => [p[0], p[p.length - 1]])).toEqual([
      [1, 10],
      [11, 20],
      [21, 25],
    ]);
    expect(await outbox.readAfter('a', 0, 0)).toEqual([]);
    expect(await outbox.readAfter('nobody', 0, 10)).toEqual([]);
  });

  it('splits a large fan-out into bounded statements, in one transaction', async () => {
    const small = await new MysqlOutboxDriver(ds, LONG, { chunkRows: 100, chunkBytes: 20_000 }).init();
    const users = Array.from({ length: 1200 }, (_, i) => `u${String(i).padStart(4, '0')}`);
    const big = env('big', { text: 'x'.repeat(1_000) });
    const deliveries: NewDelivery[] = [
      ...users.map((userId) => ({ userId, envelope: big })),
      ...users.map((userId) => ({ userId, envelope: env('small') })),
    ];
    const stored = await small.append(deliveries);
    expect(stored.slice(0, 1200).every((d) => d.seq === 1)).toBe(true);
    expect(stored.slice(1200).every((d) => d.seq === 2)).toBe(true);
    expect(await countRows()).toBe(2400);
    expect(await outbox.retention('u0777', 0)).toEqual({ head: 2, firstRetainedAfter: 1 });
    // ...and is idempotent at that size too.
    expect(seqs(await small.append(deliveries))).toEqual(seqs(stored));
    expect(await countRows()).toBe(2400);
  });

  it('refuses ids the schema cannot hold, before touching the database', async () => {
    await expect(outbox.append([{ userId: 'x'.repeat(129), envelope: env('m1') }])).rejects.toThrow(
      /invalid outbox user id/,
    );
    await expect(outbox.append([{ userId: 'a', envelope: env('m'.repeat(65)) }])).rejects.toThrow(
      /invalid outbox message id/,
    );
    expect(await countRows()).toBe(0);
  });

  it('keeps nothing of an append that fails halfway', async () => {
    await outbox.append([{ userId: 'a', envelope: env('m1') }]);
    // One row per statement: m2's entry is inserted, then m3's payload cannot be serialised.
    const oneByOne = await new MysqlOutboxDriver(ds, LONG, { chunkRows: 1 }).init();
    await expect(
      oneByOne.append([
        { userId: 'a', envelope: env('m2') },
        { userId: 'b', envelope: env('m3', { bad: BigInt(1) }) },
      ]),
    ).rejects.toThrow(/BigInt/);
    expect(await rowsOf('a')).toEqual([{ seq: 1, message_id: 'm1' }]);
    expect(await outbox.retention('a', 0)).toEqual({ head: 1, firstRetainedAfter: 1 });
    expect(await outbox.retention('b', 0)).toEqual({ head: 0, firstRetainedAfter: null });
    expect(seqs(await outbox.append([{ userId: 'a', envelope: env('m2') }]))).toEqual([2]);
  });

  it('hides expired deliveries and reports retention for intact, expired and fresh cursors', async () => {
    const short = await new MysqlOutboxDriver(ds, 1).init();
    const epoch = outbox.epoch();
    await short.append([1, 2].map((i) => ({ userId: 'a', envelope: env(`m${i}`) })));
    await outbox.append([3, 4].map((i) => ({ userId: 'a', envelope: env(`m${i}`) })));

    // Intact: everything after any cursor is still there.
    expect(await outbox.retention('a', 0)).toEqual({ head: 4, firstRetainedAfter: 1 });
    expect(await outbox.retention('a', 4)).toEqual({ head: 4, firstRetainedAfter: null });
    expect(planResume({ epoch, seq: 0 }, epoch, await outbox.retention('a', 0)).recovered).toBe(true);

    await waitFor(
      async () => (await outbox.readAfter('a', 0, 10)).length === 2,
      5_000,
      'm1 and m2 to expire',
    );
    expect(seqs(await outbox.readAfter('a', 0, 10))).toEqual([3, 4]);
    expect(seqs(await outbox.readAfter('a', 1, 1))).toEqual([3]);

    // Expired: a cursor before the hole cannot be recovered; one at its edge can.
    expect(await outbox.retention('a', 0)).toEqual({ head: 4, firstRetainedAfter: 3 });
    expect(planResume({ epoch, seq: 0 }, epoch, await outbox.retention('a', 0)).recovered).toBe(false);
    expect(planResume({ epoch, seq: 1 }, epoch, await outbox.retention('a', 1)).recovered).toBe(false);
    expect(planResume({ epoch, seq: 2 }, epoch, await outbox.retention('a', 2))).toEqual({
      recovered: true,
      afterSeq: 2,
    });

    // A user whose whole log expired keeps its head.
    await short.append([{ userId: 'b', envelope: env('m1') }]);
    await waitFor(
      async () => (await outbox.retention('b', 0)).firstRetainedAfter === null,
      5_000,
      'b to expire',
    );
    expect(await outbox.retention('b', 0)).toEqual({ head: 1, firstRetainedAfter: null });
    expect(planResume({ epoch, seq: 1 }, epoch, await outbox.retention('b', 1)).recovered).toBe(true);

    // Fresh: a user the store never saw.
    expect(await outbox.retention('nobody', 0)).toEqual({ head: 0, firstRetainedAfter: null });
    expect(await outbox.retention('nobody', 5)).toEqual({ head: 0, firstRetainedAfter: null });
  });

  it('purges expired deliveries in bounded chunks and keeps heads and live deliveries', async () => {
    const short = await new MysqlOutboxDriver(ds, 1).init();
    await short.append(
      ['a', 'b', 'c'].flatMap((userId) =>
        Array.from({ length: 9 }, (_, i) => ({ userId, envelope: env(`old${i}`) })),
      ),
    ); // 27 rows
    await outbox.append(['a', 'b'].map((userId) => ({ userId, envelope: env('new') })));
    expect(await outbox.purgeExpired(10)).toBe(0); // nothing expired yet

    await waitFor(
      async () => (await outbox.readAfter('c', 0, 10)).length === 0,
      5_000,
      'old deliveries to expire',
    );
    const chunks: number[] = [];
    for (let n = -1; n !== 0;) chunks.push((n = await outbox.purgeExpired(10)));
    expect(chunks).toEqual([10, 10, 7, 0]);
    expect(await countRows()).toBe(2);
    expect(await outbox.retention('a', 0)).toEqual({ head: 10, firstRetainedAfter: 10 });
    expect(await outbox.retention('c', 0)).toEqual({ head: 9, firstRetainedAfter: null });
    // Seqs continue after a purge; idempotency holds for what is still stored.
    expect(seqs(await outbox.append([{ userId: 'c', envelope: env('next') }]))).toEqual([10]);
    expect(seqs(await outbox.append([{ userId: 'a', envelope: env('new') }]))).toEqual([10]);
  });

  // Optimistic (MariaDB's default): one head upsert that returns the new heads, then the inserts.
  // Careful (what MySQL runs): lock the heads, read them with the known entries, insert, write heads.
  it.each([
    {
      path: 'optimistic',
      optimistic: true,
      writes: ['INSERT INTO outbox_head', 'INSERT INTO outbox_entry', 'INSERT INTO outbox_delivery'],
      redeliveryTrips: 6,
    },
    {
      path: 'careful',
      optimistic: false,
      writes: [
        'INSERT INTO outbox_head',
        '(SELECT scope, id,',
        'INSERT INTO outbox_entry',
        'INSERT INTO outbox_delivery',
        'INSERT INTO outbox_head',
      ],
      redeliveryTrips: 3,
    },
  ])(
    'stores each payload once and writes a batch in multi-row statements and 2 round trips, however many members ($path path)',
    async ({ optimistic, writes, redeliveryTrips }) => {
      const store = await new MysqlOutboxDriver(ds, LONG, { optimistic }).init();
      const statements: string[] = [];
      let roundTrips = 0;
      const create = ds.createQueryRunner.bind(ds);
      const spy = jest.spyOn(ds, 'createQueryRunner').mockImplementation((...args) => {
        const qr = create(...args);
        const query = qr.query.bind(qr);
        qr.query = ((sql: string, params?: unknown[], structured?: boolean) => {
          roundTrips++;
          for (const one of sql.split(';\n')) statements.push(one.trim().split(/\s+/).slice(0, 3).join(' '));
          return query(sql, params, structured as true);
        }) as typeof qr.query;
        return qr;
      });
      try {
        const members = Array.from({ length: 200 }, (_, i) => `member${i}`);
        const body = { text: 'x'.repeat(2_000) };
        const batch: NewDelivery[] = ['m1', 'm2', 'm3'].flatMap((id) =>
          members.map((userId) => ({ userId, envelope: env(id, body) })),
        );
        const first = await store.append(batch);
        expect(statements.filter((q) => !/^(START|COMMIT|SET)/i.test(q))).toEqual(writes);
        expect(roundTrips).toBe(2);
        expect(
          first
            .filter((d) => d.userId === 'member7')
            .map((d) => [d.seq, (d.envelope as { seq?: number }).seq]),
        ).toEqual([
          [1, 1],
          [2, 2],
          [3, 3],
        ]);
        const [{ entries, bytes }]: { entries: number | string; bytes: number | string }[] = await ds.query(
          'SELECT COUNT(*) AS entries, SUM(LENGTH(payload)) AS bytes FROM outbox_entry',
        );
        expect(Number(entries)).toBe(3);
        expect(Number(bytes)).toBeLessThan(3 * 2_200); // not 600 copies
        expect(await countRows()).toBe(600);

        // A redelivery writes nothing and answers the same seqs. The careful path reads what exists
        // (one more round trip); the optimistic one first finds out by a failed insert, rolls back
        // and takes the careful path.
        roundTrips = 0;
        expect(await store.append(batch)).toEqual(first);
        expect(roundTrips).toBe(redeliveryTrips);
        expect(await countRows()).toBe(600);
        const heads: { seq: number }[] = await ds.query(
          `SELECT seq FROM outbox_head WHERE scope = 'u' AND id = 'member7'`,
        );
        expect(heads.map((h) => Number(h.seq))).toEqual([3]); // the rolled back attempt moved nothing
      } finally {
        spy.mockRestore();
      }
    },
  );

  it('runs a transaction that lost a deadlock again, from the start', async () => {
    await ds.query(`INSERT INTO outbox_head (scope, id, seq) VALUES ('u', 'x', 0), ('u', 'y', 0)`);
    // Both transactions hold their first row before either asks for its second: a true deadlock.
    let arrived = 0;
    let release!: () => void;
    const bothLocked = new Promise<void>((r) => (release = r));
    const attempts = { xy: 0, yx: 0 };
    const bump = (order: 'xy' | 'yx') =>
      inTransaction(ds, async (qr) => {
        attempts[order]++;
        const [first, second] = order === 'xy' ? ['x', 'y'] : ['y', 'x'];
        await qr.query(`UPDATE outbox_head SET seq = seq + 1 WHERE scope = 'u' AND id = ?`, [first]);
        if (attempts[order] === 1 && ++arrived === 2) release();
        await bothLocked;
        await qr.query(`UPDATE outbox_head SET seq = seq + 1 WHERE scope = 'u' AND id = ?`, [second]);
      });
    await Promise.all([bump('xy'), bump('yx')]);
    expect(attempts.xy + attempts.yx).toBe(3); // the victim ran twice
    const rows: { seq: number }[] = await ds.query(
      `SELECT seq FROM outbox_head WHERE scope = 'u' AND id IN ('x', 'y')`,
    );
    expect(rows.map((r) => Number(r.seq))).toEqual([2, 2]); // the victim's first attempt left nothing
  });

  it('keeps seqs gapless and commit-ordered with 4 routers appending for the same users at once', async () => {
    const ROUTERS = 4;
    const LOOPS = 2; // concurrent batches per router (partitions)
    const BATCHES = 30;
    const users = Array.from({ length: 12 }, (_, i) => `user${i}`);
    const sources = await Promise.all(Array.from({ length: ROUTERS }, () => open(LOOPS + 1)));
    const readerDs = await open(2);
    try {
      const routers = await Promise.all(sources.map((s) => new MysqlOutboxDriver(s, LONG).init()));
      const reader = new MysqlOutboxDriver(readerDs, LONG);

      // Deterministic pseudo-random membership so shared (redelivered) batches are identical everywhere.
      const membersOf = (k: number) => users.filter((_, i) => (i * 7 + k * 13) % 5 !== 0);
      const batchFor = (router: number, loop: number, b: number): NewDelivery[] => {
        // Every 5th batch is the same message on every router: a redelivery racing its original.
        const id = b % 5 === 0 ? `shared-${loop}-${b}` : `r${router}-l${loop}-b${b}`;
        const envelope = env(id);
        const members = membersOf(router * 100 + loop * 10 + b);
        return (b % 5 === 0 ? membersOf(loop * 10 + b) : members).map((userId) => ({ userId, envelope }));
      };

      const returned = new Map<string, number>(); // "user message" -> seq, as told to each router
      const conflicts: string[] = [];
      let writing = true;
      const writers = routers.flatMap((router, r) =>
        Array.from({ length: LOOPS }, async (_, loop) => {
          for (let b = 0; b < BATCHES; b++) {
            for (const d of await router.append(batchFor(r, loop, b))) {
              const key = `${d.userId} ${d.envelope.id}`;
              const prev = returned.get(key);
              if (prev !== undefined && prev !== d.seq) conflicts.push(`${key}: ${prev} vs ${d.seq}`);
              returned.set(key, d.seq);
            }
          }
        }),
      );

      // The reader follows every user's log while the writers run: each read must continue exactly
      // where the previous one ended (never seq N before N-1).
      const last = new Map(users.map((u) => [u, 0]));
      const violations: string[] = [];
      let nonEmptyReads = 0;
      const follow = async () => {
        for (const u of users) {
          const page = await reader.readAfter(u, last.get(u)!, 1000);
          if (page.length > 0) nonEmptyReads++;
          for (const d of page) {
            if (d.seq !== last.get(u)! + 1) violations.push(`${u}: read ${d.seq} after ${last.get(u)}`);
            last.set(u, d.seq);
          }
        }
      };
      const following = (async () => {
        while (writing) await follow();
        await follow();
      })();
      try {
        await Promise.all(writers);
      } finally {
        writing = false;
        await following;
      }

      expect(violations).toEqual([]);
      expect(conflicts).toEqual([]);
      expect(nonEmptyReads).toBeGreaterThan(users.length); // it really read while writing

      const expected = new Map<string, Set<string>>(users.map((u) => [u, new Set()]));
      for (let r = 0; r < ROUTERS; r++) {
        for (let loop = 0; loop < LOOPS; loop++) {
          for (let b = 0; b < BATCHES; b++) {
            for (const d of batchFor(r, loop, b)) expected.get(d.userId)!.add(d.envelope.id);
          }
        }
      }
      for (const u of users) {
        const rows = await rowsOf(u);
        const n = expected.get(u)!.size;
        expect(rows.map((x) => x.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
        expect(new Set(rows.map((x) => x.message_id))).toEqual(expected.get(u));
        expect(last.get(u)).toBe(n);
        expect((await outbox.retention(u, 0)).head).toBe(n);
        for (const x of rows) expect(returned.get(`${u} ${x.message_id}`)).toBe(x.seq);
      }
    } finally {
      await Promise.all([...sources, readerDs].map((s) => s.destroy()));
    }
  });
});
