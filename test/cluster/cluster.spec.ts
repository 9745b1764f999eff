import { randomUUID } from 'node:crypto';
import { createConnection } from 'mysql2/promise';
import { databaseFor, mysqlAdmin } from '../support/backends';
import { clusterRoleEnvs, NodeProcess, startNode, stopNode } from '../support/cluster';
import { waitFor } from '../support/wait-for';
import { Frame, TestClient } from '../support/ws-client';

/**
 * A real cluster: separate OS processes on Kafka, Redis and MariaDB — two gateway-only nodes, routers
 * in one consumer group — driven by real WebSocket clients spread over both gateways.
 */
const run = randomUUID().slice(0, 8);
const database = databaseFor(`cluster-${run}`);
const { gatewayEnv, routerEnv } = clusterRoleEnvs(`cluster-${run}`);

jest.setTimeout(180_000);

describe('cluster: 2 gateways + routers as separate processes on the production engines', () => {
  let gw1: NodeProcess, gw2: NodeProcess, r1: NodeProcess, r2: NodeProcess;
  const clients: TestClient[] = [];
  const connect = async (node: NodeProcess, user: string, last?: string) => {
    const { client, welcome } = await TestClient.connect(`${node.ws}?user_id=${user}`, last);
    clients.push(client);
    return { client, welcome };
  };
  const put = async (id: string, members: string[]) => {
    const res = await fetch(`${gw1.http}/v1/conversations/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members }),
    });
    expect(res.status).toBe(200);
  };

  beforeAll(async () => {
    await mysqlAdmin(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
    // The first router runs the migrations and creates the topic; the others start in parallel.
    r1 = await startNode('router-1', routerEnv);
    [r2, gw1, gw2] = await Promise.all([
      startNode('router-2', routerEnv),
      startNode('gateway-1', gatewayEnv),
      startNode('gateway-2', gatewayEnv),
    ]);
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.terminate();
  });

  afterAll(async () => {
    await Promise.all([gw1, gw2, r1, r2].filter(Boolean).map((n) => stopNode(n)));
    await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``);
  });

  it('a gateway-only node opens /ws; a router-only node does not', async () => {
    await expect(TestClient.open(`${r1.ws}?user_id=x`)).rejects.toThrow();
    const { welcome } = await connect(gw1, 'x');
    expect(welcome.payload?.node_id).toBe('gateway-1');
    const live = (await (await fetch(`${r1.http}/health/live`)).json()) as { roles: string[] };
    expect(live.roles).toEqual(['router']);
  });

  it('messages cross nodes, and a user connected to both nodes gets every message on both', async () => {
    await put('cross', ['ann', 'ben']);
    const { client: annA } = await connect(gw1, 'ann');
    const { client: annB } = await connect(gw2, 'ann');
    const { client: ben } = await connect(gw2, 'ben');
    const acks: Frame[] = [];
    for (let i = 0; i < 20; i++) acks.push(await (i % 2 ? annA : ben).sendMessage('cross', i, `x${i}`));
    expect(acks.every((a) => a.type === 'ack')).toBe(true);
    const ids = acks.map((a) => a.msg_id);
    for (const c of [annA, annB, ben]) {
      const got = await c.messages(20, 20_000);
      expect(got.map((m) => m.payload?.id)).toEqual(ids);
    }
  });

  it("a membership change made through one gateway's API applies to the very next send on the other", async () => {
    const api = (path: string, body: unknown) =>
      fetch(`${gw1.http}/v1/conversations/${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const { client: cy } = await connect(gw2, 'cy');
    const code = async (conversation: string, ref: string) => {
      const f = await cy.sendMessage(conversation, ref, ref);
      return f.type === 'ack' ? 'ack' : f.payload?.code;
    };
    // gw2's membership set for each conversation is loaded (and cached) before every change.
    expect(await code('later', 'm0')).toBe('not_found');
    await put('later', ['cy']);
    expect(await code('later', 'm1')).toBe('ack');
    await put('members', ['cy', 'dee']);
    expect(await code('members', 'm2')).toBe('ack');
    expect((await api('members/members/remove', { members: ['cy'] })).status).toBe(200);
    expect(await code('members', 'm3')).toBe('forbidden');
    expect((await api('members/members', { members: ['cy'] })).status).toBe(200);
    expect(await code('members', 'm4')).toBe('ack');
    expect((await fetch(`${gw1.http}/v1/conversations/members`, { method: 'DELETE' })).status).toBe(204);
    expect(await code('members', 'm5')).toBe('not_found');
  });

  it('kill -9 of a gateway while messages flow: its clients resume on the other node with every acked message exactly once, in order', async () => {
    await put('crash-gw', ['cat', 'dan', 'eve']);
    const victim = await startNode('gateway-3', gatewayEnv);
    const { client: cat } = await connect(victim, 'cat');
    const { client: dan } = await connect(victim, 'dan');
    const { client: eve } = await connect(gw2, 'eve');
    // Everything each user's connections recorded, in order (TestClient records every frame it reads).
    const sockets = new Map<string, TestClient[]>([
      ['cat', [cat]],
      ['dan', [dan]],
    ]);
    const received = (user: string): Frame[] =>
      sockets.get(user)!.flatMap((c) => c.frames.filter((f) => f.type === 'message'));

    const total = 150;
    const acked: string[] = [];
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        const a = await eve.sendMessage('crash-gw', { i }, `g${i}`, 20_000);
        if (a.type === 'ack') acked.push(a.msg_id!);
      }
    })();
    await waitFor(() => received('cat').length >= 30, 20_000, 'some messages before the crash');
    victim.proc.kill('SIGKILL');
    await Promise.all([cat.waitClosed(10_000), dan.waitClosed(10_000)]);
    const resumed = await Promise.all(
      (['cat', 'dan'] as const).map(async (user) => {
        const last = received(user).at(-1)!.msg_id!;
        const { client, welcome } = await connect(gw1, user, last);
        expect(welcome.payload?.recovered).toBe(true);
        sockets.get(user)!.push(client);
        return client;
      }),
    );
    await sending;
    expect(acked).toHaveLength(total);
    for (const user of ['cat', 'dan']) {
      await waitFor(() => received(user).length >= total, 30_000, `${user} to have all ${total}`);
      const got = received(user);
      expect(got.map((m) => m.payload?.id)).toEqual(acked);
      const cursors = got.map((m) => m.msg_id!);
      expect([...cursors].sort()).toEqual(cursors);
    }
    expect(resumed).toHaveLength(2);
  });

  it('SIGTERM drains a gateway: clients are told to reconnect elsewhere (1012) and the process exits promptly', async () => {
    const leaving = await startNode('gateway-4', gatewayEnv);
    const { client } = await connect(leaving, 'hal');
    const closed = client.waitClosed(15_000);
    const t0 = Date.now();
    leaving.proc.kill('SIGTERM');
    expect(await closed).toBe(1012);
    await Promise.race([
      leaving.exited,
      new Promise((_, reject) => setTimeout(() => reject(new Error('no exit')), 15_000)),
    ]);
    console.log(`gateway drained and exited in ${Date.now() - t0} ms`);
    const { welcome } = await connect(gw2, 'hal');
    expect(welcome.payload?.recovered).toBe(true);
  });

  it('kill -9 of a router mid-stream loses nothing and duplicates nothing; a fresh router rejoins quickly', async () => {
    await put('crash-router', ['fay', 'gus']);
    const { client: fay } = await connect(gw1, 'fay');
    const { client: gus } = await connect(gw2, 'gus');
    const total = 150;
    const acked: string[] = [];
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        const a = await fay.sendMessage('crash-router', { i }, `k${i}`, 20_000);
        if (a.type === 'ack') acked.push(a.msg_id!);
        if (i === 40) r1.proc.kill('SIGKILL');
      }
    })();
    await sending;
    expect(acked).toHaveLength(total);
    const got = await gus.messages(total, 60_000);
    expect(got.map((m) => m.payload?.id)).toEqual(acked);
    // The outbox holds each (recipient, message) once despite the redelivered batch.
    const db = await createConnection({ host: '127.0.0.1', user: 'root', database });
    const [rows] = await db.query(
      'SELECT user_id, COUNT(*) AS n, COUNT(DISTINCT entry_id) AS distinct_ids, MAX(seq) AS head FROM outbox_delivery WHERE user_id IN (?, ?) GROUP BY user_id',
      ['fay', 'gus'],
    );
    await db.end();
    for (const row of rows as { n: number; distinct_ids: number; head: number }[]) {
      expect(Number(row.n)).toBe(total);
      expect(Number(row.distinct_ids)).toBe(total);
      expect(Number(row.head)).toBe(total);
    }
    await fay.messages(total, 30_000);

    // Replace the dead router and stop the survivor cleanly: the newcomer must own every partition.
    const t0 = Date.now();
    r1 = await startNode('router-3', routerEnv);
    await stopNode(r2);
    const a = await fay.sendMessage('crash-router', 'after restart', 'k-after', 20_000);
    const [m] = await gus.messages(1, 60_000);
    expect(m.payload?.id).toBe(a.msg_id);
    console.log(`router replaced and delivering in ${Date.now() - t0} ms`);
  });
});
