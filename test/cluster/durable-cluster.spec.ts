import { randomUUID } from 'node:crypto';
import { databaseFor, mysqlAdmin } from '../support/backends';
import { clusterRoleEnvs, NodeProcess, startNode, stopNode } from '../support/cluster';
import { TestClient } from '../support/ws-client';

/**
 * Protocol v1.1 durable features across real processes (2 gateways, 2 routers in one consumer group,
 * production engines): `payload.seq` stays gapless across a router `kill -9` and the redelivery that
 * follows, and read receipts cross gateway nodes. The routers broadcast every batch to both gateways
 * (ROUTER_BROADCAST_PER_NODE=1: no session lookup, each gateway keeps its own users); the other
 * cluster suites run the session-lookup path.
 */
const run = randomUUID().slice(0, 8);
const database = databaseFor(`durable-${run}`);
const roles = clusterRoleEnvs(`durable-${run}`);
const gatewayEnv = roles.gatewayEnv;
const routerEnv = { ...roles.routerEnv, ROUTER_BROADCAST_PER_NODE: '1' };

jest.setTimeout(180_000);

describe('cluster: conversation seq and receipts across processes', () => {
  let gw1: NodeProcess, gw2: NodeProcess, r1: NodeProcess, r2: NodeProcess;
  const clients: TestClient[] = [];
  const connect = async (node: NodeProcess, user: string, last?: string) => {
    const { client } = await TestClient.connect(`${node.ws}?user_id=${user}`, last);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    await mysqlAdmin(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
    r1 = await startNode('router-1', routerEnv); // runs the migrations, creates the topic
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

  it('keeps payload.seq gapless per conversation across a router kill -9 and redelivery; receipts cross gateways', async () => {
    const res = await fetch(`${gw1.http}/v1/conversations/seq-crash`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members: ['ivy', 'jon'] }),
    });
    expect(res.status).toBe(200);
    const ivy = await connect(gw1, 'ivy');
    const jon = await connect(gw2, 'jon');
    const total = 120;
    const acked: string[] = [];
    for (let i = 0; i < total; i++) {
      const a = await ivy.sendMessage('seq-crash', { i }, `s${i}`, 20_000);
      if (a.type === 'ack') acked.push(a.msg_id!);
      if (i === 30) r1.proc.kill('SIGKILL'); // its uncommitted batches are redelivered to router-2
    }
    expect(acked).toHaveLength(total);
    const got = await jon.messages(total, 60_000);
    expect(got.map((m) => m.payload?.id)).toEqual(acked);
    const numbers = Array.from({ length: total }, (_, i) => i + 1);
    expect(got.map((m) => m.payload?.seq)).toEqual(numbers);
    expect((await ivy.messages(total, 30_000)).map((m) => m.payload?.seq)).toEqual(numbers);
    // A replay from the outbox (fresh device, the other gateway) carries the same numbers.
    const replay = await (await connect(gw1, 'jon')).messages(total, 30_000);
    expect(replay.map((m) => m.payload?.seq)).toEqual(numbers);

    // jon (gateway-2) reads everything: ivy (gateway-1) gets the receipt after the messages.
    jon.send({ type: 'read', payload: { conversation_id: 'seq-crash', seq: total } });
    const receipt = await ivy.next((f) => f.type === 'receipt', 30_000);
    expect(receipt.payload).toMatchObject({
      conversation_id: 'seq-crash',
      user_id: 'jon',
      kind: 'read',
      seq: total,
    });
    const markers = (await (
      await fetch(`${gw2.http}/v1/conversations/seq-crash/receipts`)
    ).json()) as unknown;
    expect(markers).toMatchObject({ head: total, receipts: [{ user_id: 'jon', read: total }] });
  });
});
