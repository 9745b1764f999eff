import { randomUUID } from 'node:crypto';
import { databaseFor, isolatedEngineEnv, mysqlAdmin } from '../support/backends';
import { NodeProcess, startNode, stopNode } from '../support/cluster';
import { PollTestClient } from '../support/poll-client';
import { waitFor } from '../support/wait-for';
import { Frame, TestClient } from '../support/ws-client';

/**
 * Long polling through a load balancer that does not pin sessions (issue 12): every request of one
 * long-polling session goes to the next gateway process in turn, and then one gateway dies. The
 * session continues from the cursor each request carries, without loss or duplicates.
 */
const run = randomUUID().slice(0, 8);
const database = databaseFor(`lpcluster-${run}`);
const env = {
  ...isolatedEngineEnv(`lpcluster-${run}`),
  NODE_ENV: 'test',
  LOG_LEVEL: 'warn',
  // A pong must come back within two beats (2-3 s): a loaded CI box can deschedule the test process for a second.
  HEARTBEAT_MS: '1000',
  POLL_TIMEOUT_MS: '3000',
  // The same key on every node: any of them accepts the session id another issued.
  POLL_SESSION_SECRET: `cluster-${run}`.padEnd(40, '-'),
};

jest.setTimeout(180_000);

describe('cluster: a long-polling session spread over two gateway processes', () => {
  let gw1: NodeProcess, gw2: NodeProcess, router: NodeProcess;
  const sockets: TestClient[] = [];
  const polls: PollTestClient[] = [];

  beforeAll(async () => {
    await mysqlAdmin(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
    router = await startNode('lp-router', { ...env, APP_ROLES: 'router' });
    [gw1, gw2] = await Promise.all([
      startNode('lp-gateway-1', { ...env, APP_ROLES: 'gateway' }),
      startNode('lp-gateway-2', { ...env, APP_ROLES: 'gateway' }),
    ]);
  });

  afterAll(async () => {
    for (const p of polls) await p.stop();
    for (const s of sockets) s.terminate();
    await Promise.all([gw1, gw2, router].filter(Boolean).map((n) => stopNode(n)));
    await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``);
  });

  it('polls and posts answered by alternating nodes, then by the survivor of a crash, lose and repeat nothing', async () => {
    const res = await fetch(`${gw1.http}/v1/conversations/lp-room`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members: ['lp-ann', 'lp-ben'] }),
    });
    expect(res.status).toBe(200);
    const { client: ben } = await TestClient.connect(`${gw2.ws}?user_id=lp-ben`);
    sockets.push(ben);
    const ann = await PollTestClient.open(gw1.http, { userId: 'lp-ann' });
    polls.push(ann);
    await ann.stop(); // this test drives every poll by hand, choosing the node
    const nodes = [gw1, gw2];
    let turn = 0;
    const next = () => nodes[turn++ % nodes.length].http;
    const annMessages = () => ann.frames.filter((f) => f.type === 'message');

    const expected: unknown[] = [];
    for (let round = 0; round < 8; round++) {
      // ben (WebSocket, gateway 2) and ann (HTTP, alternating nodes) each send one message.
      const acked = await ben.sendMessage('lp-room', `ben-${round}`, `b${round}`, 20_000);
      expect(acked.type).toBe('ack');
      const post = await ann.post(
        [
          {
            type: 'send',
            msg_id: `a${round}`,
            payload: { conversation_id: 'lp-room', body: `ann-${round}` },
          },
        ],
        next(),
      );
      expect(post.status).toBe(200);
      expect(post.body.map((f: Frame) => f.type)).toEqual(['ack']);
      expected.push(`ben-${round}`, `ann-${round}`);
      await waitFor(
        async () => {
          const answer = await ann.pollOnce(next());
          expect(answer.status).toBe(200);
          return annMessages().length >= expected.length;
        },
        30_000,
        `round ${round} to reach ann`,
        0,
      );
    }
    expect(annMessages().map((f) => f.payload?.body)).toEqual(expected);

    // Gateway 1 dies without a drain; the session goes on at gateway 2 from the cursor.
    gw1.proc.kill('SIGKILL');
    await gw1.exited;
    for (let k = 0; k < 3; k++) {
      expect((await ben.sendMessage('lp-room', `after-${k}`, `c${k}`, 20_000)).type).toBe('ack');
      expected.push(`after-${k}`);
    }
    await waitFor(
      async () => {
        const answer = await ann.pollOnce(gw2.http);
        expect(answer.status).toBe(200);
        return annMessages().length >= expected.length;
      },
      30_000,
      'the messages after the crash',
      0,
    );
    const bodies = annMessages().map((f) => f.payload?.body);
    expect(bodies).toEqual(expected);
    const cursors = annMessages().map((f) => f.msg_id);
    expect(new Set(cursors).size).toBe(cursors.length);
    // Nothing more is owed: one more poll brings no message.
    const extra = await ann.pollOnce(gw2.http);
    expect(extra.body.filter((f: Frame) => f.type === 'message')).toEqual([]);
  });
});
