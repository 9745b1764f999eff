import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { connect as sdkConnect, RelayClient } from '../../packages/client/src/index';
import { databaseFor, isolatedEngineEnv, mysqlAdmin } from '../support/backends';
import { NodeProcess, startNode, stopNode } from '../support/cluster';
import { waitFor } from '../support/wait-for';
import { Frame, TestClient } from '../support/ws-client';

/**
 * v1.1 typing and presence across two gateway processes on the production engines (Redis node
 * channels and presence store), plus a third gateway that is killed with SIGKILL. TTL and grace are
 * small so a crash shows within seconds.
 */
const run = randomUUID().slice(0, 8);
const database = databaseFor(`cluster-live-${run}`);
const TTL_MS = 3000;
const GRACE_MS = 800;
const EXPIRES_MS = 1000;
const env = {
  ...isolatedEngineEnv(`cluster-live-${run}`),
  NODE_ENV: 'test',
  LOG_LEVEL: 'warn',
  // Two missed pongs (2-3 s) end a socket: a test process descheduled for a second on a loaded 2-core
  // box must not lose its clients (CI saw a 1006 with 500 ms). The session TTL is 3 beats, as by default.
  HEARTBEAT_MS: '1000',
  SESSION_TTL_MS: String(TTL_MS),
  PRESENCE_GRACE_MS: String(GRACE_MS),
  TYPING_EXPIRES_MS: String(EXPIRES_MS),
  TYPING_INTERVAL_MS: '4000', // longer than the test's expiry wait, so the second device's start falls inside it
};
const gatewayEnv = { ...env, APP_ROLES: 'gateway' };

jest.setTimeout(120_000);

describe('cluster: typing and presence across gateway processes', () => {
  let router: NodeProcess, gw1: NodeProcess, gw2: NodeProcess;
  const clients: TestClient[] = [];
  const sdks: RelayClient[] = [];
  const connect = async (node: NodeProcess, user: string) => {
    const { client } = await TestClient.connect(`${node.ws}?user_id=${user}`);
    clients.push(client);
    return client;
  };
  const put = async (id: string, members: string[]) => {
    const res = await fetch(`${gw1.http}/v1/conversations/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members }),
    });
    expect(res.status).toBe(200);
  };
  const snapshotOf = (conversation: string) => (f: Frame) =>
    f.type === 'presence' && f.payload?.conversation_id === conversation && 'online' in (f.payload ?? {});
  const changeOf = (conversation: string, user: string, status?: string) => (f: Frame) =>
    f.type === 'presence' &&
    f.payload?.conversation_id === conversation &&
    f.payload?.user_id === user &&
    (status === undefined || f.payload?.status === status);
  const subscribe = async (c: TestClient, conversation: string) => {
    c.send({ type: 'presence.subscribe', payload: { conversation_id: conversation } });
    return (await c.next(snapshotOf(conversation))).payload?.online as string[];
  };
  const pingPong = async (c: TestClient) => {
    c.send({ type: 'ping' });
    await c.next((f) => f.type === 'pong');
  };

  beforeAll(async () => {
    await mysqlAdmin(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
    // The router runs the migrations (the gateways read the outbox on hello).
    router = await startNode(`live-router-${run}`, { ...env, APP_ROLES: 'router' });
    [gw1, gw2] = await Promise.all([
      startNode(`live-gw1-${run}`, gatewayEnv),
      startNode(`live-gw2-${run}`, gatewayEnv),
    ]);
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.terminate();
    await Promise.all(sdks.splice(0).map((s) => s.close()));
  });

  afterAll(async () => {
    await Promise.all([gw1, gw2, router].filter(Boolean).map((n) => stopNode(n)));
    await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``);
  });

  it("typing reaches the other members' connections on both nodes, never the typer's devices, and expires", async () => {
    await put('ty', ['ann', 'bob', 'cy']);
    const annA = await connect(gw1, 'ann');
    const annB = await connect(gw2, 'ann');
    const bob = await connect(gw2, 'bob');
    const cy = await connect(gw1, 'cy');
    const sdkBob = sdkConnect({ url: gw2.ws, userId: 'bob', WebSocket: WebSocket as never });
    sdks.push(sdkBob);
    await sdkBob.whenOpen();
    const sdkEvents: boolean[] = [];
    sdkBob.on('typing', (e) => sdkEvents.push(e.typing));

    annA.send({ type: 'typing', payload: { conversation_id: 'ty', state: 'start' } });
    for (const c of [bob, cy]) {
      const f = await c.next((x) => x.type === 'typing');
      expect(f.payload).toEqual({
        conversation_id: 'ty',
        user_id: 'ann',
        state: 'start',
        expires_in_ms: EXPIRES_MS,
      });
    }
    // The typer's second device, on the other node, within the interval: not relayed again.
    annB.send({ type: 'typing', payload: { conversation_id: 'ty', state: 'start' } });
    await pingPong(annB);
    await waitFor(() => sdkBob.typingUsers('ty').includes('ann'), 5_000, 'the SDK to show ann typing');
    const shownAt = Date.now();
    // No stop is sent: the receiver's indicator expires on its own after expires_in_ms.
    await waitFor(() => sdkBob.typingUsers('ty').length === 0, 5_000, 'the typing indicator to expire');
    expect(Date.now() - shownAt).toBeGreaterThanOrEqual(EXPIRES_MS - 200);
    expect(sdkEvents).toEqual([true, false]);
    for (const c of [bob, cy]) {
      await pingPong(c);
      expect(c.frames.filter((f) => f.type === 'typing')).toHaveLength(1);
    }
    for (const c of [annA, annB]) {
      await pingPong(c);
      expect(c.frames.filter((f) => f.type === 'typing')).toEqual([]);
    }
  });

  it('presence: snapshot and online/offline changes across nodes, no flap on a switch of node', async () => {
    await put('pr', ['pat', 'quin', 'ray', 'sam']);
    const pat = await connect(gw1, 'pat');
    await connect(gw2, 'quin');
    expect((await subscribe(pat, 'pr')).sort()).toEqual(['pat', 'quin']);
    const ray = await connect(gw2, 'ray');
    expect((await pat.next(changeOf('pr', 'ray'))).payload?.status).toBe('online');
    // ray moves from gw2 to gw1 (closes, reconnects at once); sam leaves for good after ray left.
    const sam = await connect(gw2, 'sam');
    await pat.next(changeOf('pr', 'sam', 'online'));
    ray.close();
    await ray.waitClosed();
    sam.close();
    await sam.waitClosed();
    await connect(gw1, 'ray');
    const closedAt = Date.now();
    await pat.next(changeOf('pr', 'sam', 'offline'), 10_000);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(GRACE_MS - 300);
    expect(pat.frames.filter(changeOf('pr', 'ray', 'offline'))).toEqual([]);
    // A subscriber on the other node sees the same set.
    const quin2 = await connect(gw2, 'quin');
    expect((await subscribe(quin2, 'pr')).sort()).toEqual(['pat', 'quin', 'ray']);
    const status = await (await fetch(`${gw2.http}/v1/presence?user_id=ray&user_id=sam`)).json();
    expect(status).toEqual({
      users: [
        { user_id: 'ray', status: 'online' },
        { user_id: 'sam', status: 'offline' },
      ],
      online: ['ray'],
    });
  });

  it('presence: the users of a node killed with SIGKILL turn offline within the TTL plus the grace', async () => {
    await put('crash', ['tia', 'uma']);
    const victim = await startNode(`live-gw3-${run}`, gatewayEnv);
    try {
      const tia = await connect(gw1, 'tia');
      await connect(victim, 'uma');
      expect((await subscribe(tia, 'crash')).sort()).toEqual(['tia', 'uma']);
      victim.proc.kill('SIGKILL');
      const killedAt = Date.now();
      await tia.next(changeOf('crash', 'uma', 'offline'), TTL_MS + GRACE_MS + 5_000);
      const took = Date.now() - killedAt;
      // Bounded by the TTL and one sweep (≤ 1 s, here a fraction of the grace); never the grace twice.
      expect(took).toBeLessThanOrEqual(TTL_MS + GRACE_MS + 500);
    } finally {
      await stopNode(victim, 'SIGKILL');
    }
  });

  it('refuses non-members and unknown conversations on every node', async () => {
    await put('closed', ['vic']);
    for (const node of [gw1, gw2]) {
      const c = await connect(node, 'wes');
      c.send({ type: 'typing', msg_id: 'a', payload: { conversation_id: 'closed', state: 'start' } });
      expect((await c.next((f) => f.type === 'error' && f.msg_id === 'a')).payload?.code).toBe('forbidden');
      c.send({ type: 'presence.subscribe', msg_id: 'b', payload: { conversation_id: 'nowhere' } });
      expect((await c.next((f) => f.type === 'error' && f.msg_id === 'b')).payload?.code).toBe('not_found');
    }
  });
});
