import { randomUUID } from 'node:crypto';
import { createConnection } from 'mysql2/promise';
import { jumpHash } from '../../src/outbox/sharding/shard-placement';
import { MYSQL_SHARD_SERVER } from '../contracts/backends';
import { databaseFor, isolatedEngineEnv, mysqlAdmin } from '../support/backends';
import { startTestApp, TestApp } from '../support/test-app';
import { TestClient } from '../support/ws-client';

/**
 * The whole app on a 2-shard outbox (OUTBOX_SHARDS over MariaDB 3306 and the second mariadbd on
 * 3307): migrations on both at start, two users on different shards chat, each one's deliveries land
 * on that user's shard, and after a restart a device resumes from its cursor with exactly what it
 * missed. (A shard added by editing OUTBOX_SHARDS alone is refused: test/contracts/outbox-store.sharded.spec.ts.)
 */
jest.setTimeout(90_000);

const name = `sharded-app-${randomUUID().slice(0, 8)}`;
const engine = isolatedEngineEnv(name);
const database = databaseFor(name);
const main = engine.MYSQL_URL;
const second = `${MYSQL_SHARD_SERVER}/${database}`;
const env = { ...engine, OUTBOX_SHARDS: `${main},${second}` };

const userOn = (shard: number, prefix: string) => {
  for (let i = 0; ; i++) if (jumpHash(`${prefix}${i}`, 2) === shard) return `${prefix}${i}`;
};

describe('the app on a sharded outbox (2 MariaDB instances)', () => {
  let app: TestApp | null = null;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    await mysqlAdmin(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
    await mysqlAdmin(`CREATE DATABASE IF NOT EXISTS \`${database}\``, MYSQL_SHARD_SERVER);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.terminate();
  });
  afterAll(async () => {
    await app?.close();
    await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``);
    await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``, MYSQL_SHARD_SERVER);
  });

  const connect = async (user: string, last?: string) => {
    const r = await TestClient.connect(`${app!.ws}?user_id=${user}`, last);
    clients.push(r.client);
    return r;
  };

  it('routes each user to its shard, and a restarted node replays exactly what a device missed', async () => {
    // startTestApp would give it a database of its own: the env pins the databases made above.
    app = await startTestApp(env);
    const ann = userOn(0, 'ann');
    const bob = userOn(1, 'bob');
    const res = await fetch(`${app.http}/v1/conversations/sharded`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members: [ann, bob] }),
    });
    expect(res.status).toBe(200);

    const { client: a } = await connect(ann);
    const { client: b } = await connect(bob);
    const first = [];
    for (let i = 0; i < 5; i++) first.push(await (i % 2 ? b : a).sendMessage('sharded', { i }, `r${i}`));
    expect(first.every((f) => f.type === 'ack')).toBe(true);
    const seen = await b.messages(5, 20_000);
    expect(seen.map((m) => m.payload?.id)).toEqual(first.map((f) => f.msg_id));
    expect(seen.map((m) => m.payload?.seq)).toEqual([1, 2, 3, 4, 5]);
    const cursor = seen[2].msg_id!; // bob has read up to the third
    b.terminate();

    for (const [url, user, other] of [
      [main, ann, bob],
      [second, bob, ann],
    ] as const) {
      const db = await createConnection(url);
      const [rows] = await db.query(
        'SELECT user_id, COUNT(*) AS n FROM outbox_delivery WHERE user_id IN (?, ?) GROUP BY user_id',
        [user, other],
      );
      await db.end();
      expect((rows as { user_id: string; n: number }[]).map((r) => [r.user_id, Number(r.n)])).toEqual([
        [user, 5],
      ]);
    }

    // Restart the node; bob resumes from his cursor: exactly the two he missed, then live traffic.
    await app.close();
    app = await startTestApp(env);
    const { client: b2, welcome } = await connect(bob, cursor);
    expect(welcome.payload?.recovered).toBe(true);
    const replayed = await b2.messages(2, 20_000);
    expect(replayed.map((m) => m.payload?.id)).toEqual(first.slice(3).map((f) => f.msg_id));
    const { client: a2 } = await connect(ann);
    const later = await a2.sendMessage('sharded', 'after restart', 'r-after');
    const [live] = await b2.messages(1, 20_000);
    expect(live.payload?.id).toBe(later.msg_id);
    expect(live.payload?.seq).toBe(6);
  });
});
