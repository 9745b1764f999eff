import { Connection } from 'mysql2/promise';
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { loadConfig } from '../../src/config/app-config';
import { Config } from '../../src/config/config.module';
import { createDataSource, MIGRATIONS_TABLE } from '../../src/database/data-source';
import { dataSourceProvider } from '../../src/database/database.module';
import {
  migrationLockName,
  migrationStatus,
  revertLastMigration,
  runMigrationsLocked,
} from '../../src/database/migrate';
import { MIGRATIONS } from '../../src/database/migrations';
import { MysqlOutboxDriver } from '../../src/outbox/drivers/mysql-outbox.driver';
import { startTestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { mysqlConnection } from '../support/backends';

/**
 * Schema migrations against the real MariaDB of scripts/infra.sh (engines project globalSetup).
 * These tests drop and recreate whole schemas, so they work in a scratch database of their own
 * (`relay_test_migrations_<run>`, dropped at the end) instead of relay_test, where the other
 * engine suites run at the same time.
 */
const SERVER = new URL(process.env.RELAY_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/relay_test');
const DATABASE = `relay_test_migrations_${randomUUID().replace(/-/g, '').slice(0, 8)}`;
const URL_ = `mysql://${SERVER.username}${SERVER.password ? `:${SERVER.password}` : ''}@${SERVER.host}/${DATABASE}`;
const NAMES = MIGRATIONS.map((m) => m.name);
const TABLES = [
  'conversation',
  'conversation_member',
  'outbox_delivery',
  'outbox_entry',
  'outbox_head',
  'receipt_marker',
  'relay_meta',
];
/** The tables of the v1 outbox (before 1767225600003). */
const V1_TABLES = ['conversation', 'conversation_member', 'outbox', 'outbox_user_seq', 'relay_meta'];

jest.setTimeout(60_000);

let admin: Connection;
const sources: DataSource[] = [];

async function open(): Promise<DataSource> {
  const ds = createDataSource(URL_, { poolSize: 3 });
  await ds.initialize();
  sources.push(ds);
  return ds;
}

async function recreateDatabase(): Promise<void> {
  await admin.query(`DROP DATABASE IF EXISTS \`${DATABASE}\``);
  await admin.query(`CREATE DATABASE \`${DATABASE}\` CHARACTER SET utf8mb4`);
}

async function tables(): Promise<string[]> {
  const [rows] = await admin.query(
    `SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME`,
    [DATABASE],
  );
  return (rows as { t: string }[]).map((r) => r.t).filter((t) => t !== MIGRATIONS_TABLE);
}

/** The outbox payload column: its type, collation and whether the server checks it is JSON. */
async function payloadColumn(
  table = 'outbox_entry',
): Promise<{ type: string; collation: string | null; jsonChecked: boolean }> {
  const [cols] = await admin.query(
    `SELECT DATA_TYPE AS type, COLLATION_NAME AS collation FROM information_schema.COLUMNS
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = 'payload'`,
    [DATABASE, table],
  );
  const [created] = (await admin.query(`SHOW CREATE TABLE \`${DATABASE}\`.${table}`)) as unknown as [
    { 'Create Table': string }[],
  ];
  const definition = created[0]['Create Table'].split('\n').find((l) => l.includes('`payload`')) ?? '';
  const { type, collation } = (cols as { type: string; collation: string | null }[])[0];
  // MariaDB: JSON = longtext + CHECK (json_valid(payload)); MySQL 8: a native json type.
  return { type, collation, jsonChecked: /json_valid/i.test(definition) || type === 'json' };
}

/** `[[[ ... {"d": levels} ... ]]]`: an array nesting `levels` levels deep. */
function nested(levels: number): unknown {
  let v: unknown = { d: levels };
  for (let i = 1; i < levels; i++) v = [v];
  return v;
}

async function recorded(): Promise<string[]> {
  const [rows] = await admin.query(`SELECT name FROM \`${DATABASE}\`.${MIGRATIONS_TABLE} ORDER BY id`);
  return (rows as { name: string }[]).map((r) => r.name);
}

beforeAll(async () => {
  admin = await mysqlConnection(SERVER.href);
});

beforeEach(recreateDatabase);

afterEach(async () => {
  await Promise.all(sources.splice(0).map((ds) => ds.destroy().catch(() => undefined)));
});

afterAll(async () => {
  if (!admin) return;
  await admin.query(`DROP DATABASE IF EXISTS \`${DATABASE}\``);
  await admin.end();
});

describe('migrations', () => {
  it('build the schema from scratch, record each migration once, and do nothing the second time', async () => {
    const ds = await open();
    expect(await migrationStatus(ds)).toEqual(NAMES.map((name) => ({ name, executed: false })));
    expect(await runMigrationsLocked(ds)).toEqual(NAMES);
    expect(await tables()).toEqual(TABLES);
    expect(await runMigrationsLocked(ds)).toEqual([]);
    expect(await recorded()).toEqual(NAMES);
    expect(await migrationStatus(ds)).toEqual(NAMES.map((name) => ({ name, executed: true })));

    const indexes = async (table: string) => {
      const [rows] = await admin.query(
        `SELECT INDEX_NAME AS i, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) AS cols, MIN(NON_UNIQUE) AS nu
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? GROUP BY INDEX_NAME ORDER BY INDEX_NAME`,
        [DATABASE, table],
      );
      return (rows as { i: string; cols: string; nu: number }[]).map((r) => [r.i, r.cols, Number(r.nu)]);
    };
    expect(await indexes('outbox_delivery')).toEqual([
      ['ix_outbox_delivery_expires_at', 'expires_at', 1],
      ['PRIMARY', 'id', 0],
      ['uq_outbox_delivery_user_entry', 'user_id,entry_id', 0],
      ['uq_outbox_delivery_user_seq', 'user_id,seq', 0],
    ]);
    expect(await indexes('outbox_entry')).toEqual([
      ['ix_outbox_entry_expires_at', 'expires_at', 1],
      ['PRIMARY', 'entry_id', 0],
      ['uq_outbox_entry_conv_seq', 'conversation_id,conv_seq', 0],
    ]);
    expect(await indexes('outbox_head')).toEqual([['PRIMARY', 'scope,id', 0]]);
    const [collations] = await admin.query(
      `SELECT DISTINCT COLLATION_NAME AS c FROM information_schema.COLUMNS
       WHERE TABLE_SCHEMA = ? AND COLUMN_NAME IN ('user_id', 'message_id', 'conversation_id', 'entry_id', 'sender') OR (TABLE_SCHEMA = ? AND TABLE_NAME = 'conversation' AND COLUMN_NAME = 'id')`,
      [DATABASE, DATABASE],
    );
    expect((collations as { c: string }[]).map((r) => r.c)).toEqual(['utf8mb4_nopad_bin']);
  });

  it('store the outbox payload as text without a JSON check, so bodies deeper than the JSON type allows fit', async () => {
    const ds = await open();
    await runMigrationsLocked(ds);
    expect(await payloadColumn()).toEqual({ type: 'longtext', collation: 'utf8mb4_bin', jsonChecked: false });
    // MariaDB's json_valid stops at 32 levels; the protocol allows a body of MAX_JSON_DEPTH - 2 = 62.
    const outbox = await new MysqlOutboxDriver(ds, 60).init();
    const body = nested(62);
    const [stored] = await outbox.append([
      { userId: 'a', envelope: { id: 'deep', conversation_id: 'c', from: 'b', ts: 1, body } },
    ]);
    expect(stored.seq).toBe(1);
    const [back] = await outbox.readAfter('a', 0, 10);
    expect(back.envelope).toMatchObject({ body, seq: 1 });
    // Running the migration again (as after a crash before its bookkeeping) changes nothing.
    await admin.query(`DELETE FROM \`${DATABASE}\`.${MIGRATIONS_TABLE} WHERE name = ?`, [NAMES[3]]);
    expect(await runMigrationsLocked(ds)).toEqual([NAMES[3]]);
    expect((await outbox.readAfter('a', 0, 10))[0].envelope).toMatchObject({ body, seq: 1 });
  });

  it('are safe when several nodes start at once: one applies them, the others wait and find nothing to do', async () => {
    const nodes = await Promise.all(Array.from({ length: 4 }, () => open()));
    const applied = await Promise.all(nodes.map((ds) => runMigrationsLocked(ds)));
    expect(applied.flat().sort()).toEqual([...NAMES].sort());
    expect(applied.filter((a) => a.length > 0)).toHaveLength(1);
    expect(await recorded()).toEqual(NAMES);
    expect(await tables()).toEqual(TABLES);
  });

  it('wait for the lock another process holds, and give up after the lock timeout', async () => {
    const ds = await open();
    const holder = await mysqlConnection(SERVER.href);
    try {
      const [[{ got }]] = (await holder.query('SELECT GET_LOCK(?, 10) AS got', [
        migrationLockName(DATABASE),
      ])) as [{ got: number }[], unknown];
      expect(got).toBe(1);
      await expect(runMigrationsLocked(ds, { lockTimeoutSec: 1 })).rejects.toThrow(
        /could not take the migration lock/,
      );
      expect(await tables()).toEqual([]);

      let done = false;
      const running = runMigrationsLocked(ds).finally(() => (done = true));
      await waitFor(
        async () => {
          const [rows] = await admin.query(
            `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT GET_LOCK(%' AND DB = ?`,
            [DATABASE],
          );
          return Number((rows as { n: number }[])[0].n) > 0;
        },
        5_000,
        'the migration run to wait for the lock',
      );
      expect(done).toBe(false);
      await holder.query('SELECT RELEASE_LOCK(?)', [migrationLockName(DATABASE)]);
      expect(await running).toEqual(NAMES);
    } finally {
      await holder.end();
    }
  });

  it('revert one at a time, newest first, and apply again', async () => {
    const ds = await open();
    await runMigrationsLocked(ds);
    expect(await revertLastMigration(ds)).toBe(NAMES[4]); // receipt markers go
    expect(await revertLastMigration(ds)).toBe(NAMES[3]); // the v1 outbox tables come back
    expect(await tables()).toEqual(V1_TABLES);
    expect(await payloadColumn('outbox')).toMatchObject({ jsonChecked: false });
    expect(await revertLastMigration(ds)).toBe(NAMES[2]); // payload back to JSON; tables stay
    expect(await payloadColumn('outbox')).toMatchObject({ jsonChecked: true });
    expect(await tables()).toEqual(V1_TABLES);
    expect(await revertLastMigration(ds)).toBe(NAMES[1]);
    expect(await tables()).toEqual(['outbox', 'outbox_user_seq', 'relay_meta']);
    expect(await revertLastMigration(ds)).toBe(NAMES[0]);
    expect(await tables()).toEqual([]);
    expect(await revertLastMigration(ds)).toBeNull();
    expect(await runMigrationsLocked(ds)).toEqual(NAMES);
    expect(await tables()).toEqual(TABLES);
  });

  it('can run again after a run that died between its DDL and its bookkeeping', async () => {
    const ds = await open();
    await runMigrationsLocked(ds);
    const outbox = await new MysqlOutboxDriver(ds, 60).init();
    await outbox.append([
      { userId: 'a', envelope: { id: 'm1', conversation_id: 'c', from: 'b', ts: 1, body: null } },
    ]);
    await admin.query(`DROP TABLE \`${DATABASE}\`.${MIGRATIONS_TABLE}`);
    expect(await runMigrationsLocked(ds)).toEqual(NAMES);
    expect((await outbox.retention('a', 0)).head).toBe(1); // existing data untouched
  });

  it('move a v1 outbox into the shared-entry shape: same cursors and heads, messages numbered per conversation', async () => {
    const ds = await open();
    await runMigrationsLocked(ds);
    await revertLastMigration(ds);
    await revertLastMigration(ds); // back to the v1 outbox tables, empty
    const db = `\`${DATABASE}\``;
    const row = (user: string, seq: number, id: string, conversation: string, from: string) => [
      user,
      seq,
      id,
      JSON.stringify({ id, conversation_id: conversation, from, ts: 1, body: { text: id } }),
    ];
    // alice and bob share m1 and m3 of c1; bob also got m2 of c2. Heads are ahead of the rows (expired ones).
    const rows = [
      row('alice', 5, '01A', 'c1', 'bob'),
      row('bob', 2, '01A', 'c1', 'bob'),
      row('bob', 3, '01B', 'c2', 'carol'),
      row('alice', 6, '01C', 'c1', 'alice'),
      row('bob', 4, '01C', 'c1', 'alice'),
    ];
    await admin.query(
      `INSERT INTO ${db}.outbox (user_id, seq, message_id, payload, created_at, expires_at)
       VALUES ${rows.map(() => '(?, ?, ?, ?, NOW(3), NOW(3) + INTERVAL 1 HOUR)').join(', ')}`,
      rows.flat(),
    );
    await admin.query(
      `INSERT INTO ${db}.outbox_user_seq (user_id, seq) VALUES ('alice', 6), ('bob', 4), ('dave', 9)`,
    );

    expect(await runMigrationsLocked(ds)).toEqual([NAMES[3], NAMES[4]]);
    expect(await tables()).toEqual(TABLES);
    const [entries] = await admin.query(`SELECT COUNT(*) AS n FROM ${db}.outbox_entry`);
    expect(Number((entries as { n: number }[])[0].n)).toBe(3); // each message once
    const outbox = await new MysqlOutboxDriver(ds, 60).init();
    const view = async (user: string) =>
      (await outbox.readAfter(user, 0, 10)).map((d) => [
        d.seq,
        d.envelope.id,
        'seq' in d.envelope ? d.envelope.seq : null,
      ]);
    expect(await view('alice')).toEqual([
      [5, '01A', 1],
      [6, '01C', 2],
    ]);
    expect(await view('bob')).toEqual([
      [2, '01A', 1],
      [3, '01B', 1],
      [4, '01C', 2],
    ]);
    expect(await outbox.retention('dave', 0)).toEqual({ head: 9, firstRetainedAfter: null });
    expect(await outbox.conversationHeads(['c1', 'c2'])).toEqual(
      new Map([
        ['c1', 2],
        ['c2', 1],
      ]),
    );
    // New appends continue every sequence, and a redelivered old message keeps its numbers.
    const next = await outbox.append([
      { userId: 'bob', envelope: { id: '01C', conversation_id: 'c1', from: 'alice', ts: 1, body: null } },
      { userId: 'alice', envelope: { id: '01D', conversation_id: 'c1', from: 'bob', ts: 2, body: null } },
    ]);
    expect(next.map((d) => [d.userId, d.seq, 'seq' in d.envelope ? d.envelope.seq : null])).toEqual([
      ['bob', 4, 2],
      ['alice', 7, 3],
    ]);
  });

  it('are required by the outbox: without them it refuses to start, with a hint', async () => {
    const ds = await open();
    await expect(new MysqlOutboxDriver(ds, 60).init()).rejects.toThrow(
      /outbox tables do not exist: run the migrations/,
    );
  });

  it('run at startup unless MYSQL_MIGRATE_ON_START=false', async () => {
    const config = (migrate: string) =>
      loadConfig({
        NODE_ENV: 'test',
        OUTBOX: 'mysql',
        MYSQL_URL: URL_,
        MYSQL_MIGRATE_ON_START: migrate,
      }) as Config;
    const skipped = await dataSourceProvider.useFactory(config('false'));
    sources.push(skipped);
    expect(await tables()).toEqual([]);
    const migrated = await dataSourceProvider.useFactory(config('true'));
    sources.push(migrated);
    expect(await tables()).toEqual(TABLES);
  });

  it('fail startup with the address (never the password) when the database is unreachable', async () => {
    const config = loadConfig({
      NODE_ENV: 'test',
      OUTBOX: 'mysql',
      MYSQL_URL: 'mysql://root:s3cret@127.0.0.1:1/relay_test',
    }) as Config;
    const failure = dataSourceProvider.useFactory(config) as Promise<DataSource>;
    await expect(failure).rejects.toThrow(
      /cannot connect to MySQL at mysql:\/\/root@127\.0\.0\.1:1\/relay_test/,
    );
    await expect(failure).rejects.not.toThrow(/s3cret/);
  });

  it('let the whole app run on the MySQL engine: migrated at start, outbox and directory ready', async () => {
    const t = await startTestApp({ OUTBOX: 'mysql', MYSQL_URL: URL_ });
    try {
      expect(await tables()).toEqual(TABLES);
      const ready = await fetch(`${t.http}/health/ready`);
      const body = (await ready.json()) as { info?: Record<string, { status: string; engine: string }> };
      expect(ready.status).toBe(200);
      expect(body.info?.outbox).toMatchObject({ status: 'up', engine: 'mysql' });
      expect(body.info?.directory).toMatchObject({ status: 'up' });
      const put = await fetch(`${t.http}/v1/conversations/c1`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ members: ['alice', 'bob'] }),
      });
      expect(put.status).toBe(200);
      const got = await fetch(`${t.http}/v1/conversations/c1`);
      expect(await got.json()).toEqual({ id: 'c1', members: ['alice', 'bob'] });
    } finally {
      await t.close();
    }
  });
});
