import { DataSource } from 'typeorm';
import { createDataSource } from '../../src/database/data-source';
import { runMigrationsLocked } from '../../src/database/migrate';
import { BuiltinDirectoryDriver } from '../../src/directory/drivers/builtin-directory.driver';
import { MysqlDirectoryStoreDriver } from '../../src/directory/drivers/mysql-directory-store.driver';
import { ensureDatabase } from '../support/backends';

/**
 * MysqlDirectoryStoreDriver against the real MariaDB of scripts/infra.sh (engines project
 * globalSetup), in database relay_test; the directory tables are emptied before every test.
 */
const TEST_URL = process.env.RELAY_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/relay_test';

jest.setTimeout(30_000);

let ds: DataSource;
let store: MysqlDirectoryStoreDriver;

beforeAll(async () => {
  await ensureDatabase(TEST_URL);
  ds = createDataSource(TEST_URL);
  await ds.initialize();
  await runMigrationsLocked(ds);
  store = new MysqlDirectoryStoreDriver(ds);
});

afterAll(async () => {
  await ds?.destroy();
});

beforeEach(async () => {
  await ds.query('DELETE FROM conversation'); // members go by cascade (TRUNCATE refuses FK parents)
});

async function memberRows(): Promise<number> {
  const [{ n }]: { n: number | string }[] = await ds.query('SELECT COUNT(*) AS n FROM conversation_member');
  return Number(n);
}

describe('MysqlDirectoryStoreDriver', () => {
  it('puts and gets members in the order given, without duplicates', async () => {
    await store.put('c1', ['carol', 'alice', 'bob', 'alice']);
    expect(await store.get(['c1'])).toEqual(new Map([['c1', ['carol', 'alice', 'bob']]]));
  });

  it('gets many conversations in one call and leaves unknown ones out', async () => {
    await store.put('c1', ['alice', 'bob']);
    await store.put('c2', ['carol']);
    await store.put('empty', []);
    const found = await store.get(['c2', 'nope', 'c1', 'empty', 'c1']);
    expect(found).toEqual(
      new Map([
        ['c1', ['alice', 'bob']],
        ['c2', ['carol']],
        ['empty', []],
      ]),
    );
    expect(await store.get([])).toEqual(new Map());
  });

  it('replaces the member list on put', async () => {
    await store.put('c1', ['alice', 'bob', 'carol']);
    await store.put('c1', ['dave', 'alice']);
    expect((await store.get(['c1'])).get('c1')).toEqual(['dave', 'alice']);
    expect(await memberRows()).toBe(2);
  });

  it('deletes a conversation with its members and tells whether it existed', async () => {
    await store.put('c1', ['alice', 'bob']);
    await store.put('c2', ['carol']);
    expect(await store.delete('c1')).toBe(true);
    expect(await store.delete('c1')).toBe(false);
    expect(await store.delete('never')).toBe(false);
    expect(await store.get(['c1', 'c2'])).toEqual(new Map([['c2', ['carol']]]));
    expect(await memberRows()).toBe(1);
    // A deleted conversation can be created again.
    await store.put('c1', ['erin']);
    expect((await store.get(['c1'])).get('c1')).toEqual(['erin']);
  });

  it('treats ids byte-exactly: case and trailing spaces are different conversations and users', async () => {
    await store.put('c1', ['alice', 'Alice', 'alice ']);
    await store.put('C1', ['bob']);
    await store.put('c1 ', ['carol']);
    const found = await store.get(['c1', 'C1', 'c1 ']);
    expect(found.get('c1')).toEqual(['alice', 'Alice', 'alice ']);
    expect(found.get('C1')).toEqual(['bob']);
    expect(found.get('c1 ')).toEqual(['carol']);
  });

  it('handles large conversations and large lookups in bounded statements', async () => {
    const chunked = new MysqlDirectoryStoreDriver(ds, 100);
    const members = Array.from({ length: 2_500 }, (_, i) => `user-${i}`);
    await chunked.put('big', members);
    expect((await chunked.get(['big'])).get('big')).toEqual(members);
    const ids = Array.from({ length: 250 }, (_, i) => `conv-${i}`);
    for (const id of ids.slice(0, 5)) await chunked.put(id, [id]);
    const found = await chunked.get(ids);
    expect([...found.keys()].sort()).toEqual(ids.slice(0, 5).sort());
  });

  it('never shows a half-replaced member list to concurrent readers', async () => {
    const a = Array.from({ length: 300 }, (_, i) => `a${i}`);
    const b = Array.from({ length: 200 }, (_, i) => `b${i}`);
    await store.put('c1', a);
    const seen = new Set<number>();
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const m = (await store.get(['c1'])).get('c1');
        seen.add(m?.length ?? -1);
        expect(m && (m.every((u) => u.startsWith('a')) || m.every((u) => u.startsWith('b')))).toBe(true);
      }
    })();
    try {
      for (let i = 0; i < 10; i++)
        await Promise.all([store.put('c1', i % 2 ? a : b), store.put('c1', i % 2 ? b : a)]);
    } finally {
      writing = false;
      await reader;
    }
    expect([...seen].every((n) => n === 300 || n === 200)).toBe(true);
  });

  it('backs the built-in ConversationDirectory: null for unknown conversations', async () => {
    await store.put('c1', ['alice']);
    const directory = new BuiltinDirectoryDriver(store);
    expect(await directory.members(['c1', 'nope'])).toEqual(
      new Map<string, string[] | null>([
        ['c1', ['alice']],
        ['nope', null],
      ]),
    );
    await expect(directory.ping()).resolves.toBeUndefined();
  });
});
