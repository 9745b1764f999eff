/**
 * The debug console's HTTP API (embedded engine): what each endpoint returns, the live tail as
 * Server-Sent Events, the admin key, and the console being absent in production unless enabled.
 */
import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { SseClient } from '../support/sse-client';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';
import { signHs256 } from '../support/jwt';

const SECRET = 'console-test-secret-that-is-long-enough-for-hs256';
const KEY = 'console-admin-key-that-is-long-enough-0123456789';
const sign = (sub: string) => signHs256(SECRET, sub);

describe('debug console API (dev auth mode)', () => {
  let t: TestApp;
  const clients: TestClient[] = [];
  const tails: SseClient[] = [];
  beforeAll(async () => {
    t = await startTestApp();
    await putConversation(t.http, 'room', ['ann', 'bob']);
  });
  afterEach(() => {
    clients.splice(0).forEach((c) => c.close());
    tails.splice(0).forEach((s) => s.close());
  });
  afterAll(() => t.close());

  const json = async (path: string) => {
    const res = await fetch(`${t.http}${path}`);
    expect(res.status).toBe(200);
    return (await res.json()) as Record<string, unknown>;
  };
  const connect = async (user: string) => {
    const { client } = await TestClient.connect(`${t.ws}?user_id=${user}`);
    clients.push(client);
    return client;
  };
  const tail = async (query: string) => {
    const s = await SseClient.open(`${t.http}/console/api/tail?${query}`);
    tails.push(s);
    await s.next((e) => e.event === 'ready');
    return s;
  };

  it('serves the page and its script', async () => {
    const page = await fetch(`${t.http}/console`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('<script src="/console/console.js">');
    const js = await fetch(`${t.http}/console/console.js`);
    expect(js.headers.get('content-type')).toContain('javascript');
    expect(await js.text()).toContain('/console/api/tail');
  });

  it("lists the live nodes and this node's connection count", async () => {
    await connect('ann');
    const o = await json('/console/api/overview');
    expect(o.nodes).toEqual([t.config.nodeId]);
    expect(o.connections).toEqual({ [t.config.nodeId]: 1 });
    expect(o.connectionsScope).toBe('this node only');
  });

  it("shows a user's sessions and outbox cursor", async () => {
    const ann = await connect('ann');
    const bob = await connect('bob');
    expect((await ann.sendMessage('room', 'hi', 'r1')).type).toBe('ack');
    const delivered = await bob.next((f) => f.type === 'message');
    const u = await json('/console/api/users/bob');
    expect(u.sessions).toEqual([expect.objectContaining({ node: t.config.nodeId })]);
    expect(u.connectionsHere).toEqual([expect.objectContaining({ state: 'open' })]);
    expect(u.outbox).toMatchObject({ headCursor: delivered.msg_id });
    expect(await json('/console/api/users/nobody')).toMatchObject({
      sessions: [],
      outbox: { head: 0, headCursor: null },
    });
  });

  it("shows a conversation's members", async () => {
    expect(await json('/console/api/conversations/room')).toEqual({
      id: 'room',
      exists: true,
      members: ['ann', 'bob'],
    });
    expect(await json('/console/api/conversations/nope')).toEqual({ id: 'nope', exists: false, members: [] });
    expect((await fetch(`${t.http}/console/api/conversations/a%20b`)).status).toBe(400);
  });

  it("tails a conversation's acks and deliveries, and a user's errors", async () => {
    const room = await tail('conversation=room');
    const bobTail = await tail('user=bob');
    const ann = await connect('ann');
    const bob = await connect('bob');
    const ack = await ann.sendMessage('room', { text: 'tailed' }, 'r-tail');
    expect(ack.type).toBe('ack');
    await room.next((e) => e.event === 'ack' && e.data.msg_id === ack.msg_id && e.data.user === 'ann');
    for (const user of ['ann', 'bob']) {
      await room.next(
        (e) =>
          e.event === 'delivery' &&
          e.data.user === user &&
          e.data.from === 'ann' &&
          e.data.body === '{"text":"tailed"}',
      );
    }
    await bobTail.next((e) => e.event === 'delivery' && e.data.msg_id === ack.msg_id);
    expect((await bob.sendMessage('elsewhere', 'x', 'r-err')).type).toBe('error');
    const err = await bobTail.next((e) => e.event === 'error');
    expect(err.data).toMatchObject({
      code: 'not_found',
      user: 'bob',
      ref: 'r-err',
      conversation: 'elsewhere',
    });
    // The conversation tail saw nothing of bob's refusal elsewhere.
    expect(room.events.some((e) => e.event === 'error')).toBe(false);
  });

  it('refuses a tail without exactly one filter', async () => {
    expect((await fetch(`${t.http}/console/api/tail`)).status).toBe(400);
    expect((await fetch(`${t.http}/console/api/tail?user=a&conversation=b`)).status).toBe(400);
  });

  it('stops publishing once the last tail closes', async () => {
    const s = await tail('user=ann');
    const overview = () => json('/console/api/overview') as Promise<{ tail: { subscribers: number } }>;
    expect((await overview()).tail.subscribers).toBe(1);
    s.close();
    await waitFor(async () => (await overview()).tail.subscribers === 0, 5_000, 'the tail to unsubscribe');
  });
});

describe('debug console API with an admin key (jwt auth mode)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ AUTH_MODE: 'jwt', JWT_SECRET: SECRET, ADMIN_API_KEY: KEY });
  });
  afterAll(() => t.close());

  it.each([
    '/console/api/overview',
    '/console/api/users/ann',
    '/console/api/conversations/room',
    '/console/api/tail?user=ann',
  ])('%s needs the key', async (path) => {
    expect((await fetch(`${t.http}${path}`)).status).toBe(401);
    const wrong = await fetch(`${t.http}${path}`, { headers: { authorization: `Bearer ${KEY}x` } });
    expect(wrong.status).toBe(401);
  });

  it('answers with the key, and tails with it', async () => {
    const auth = { authorization: `Bearer ${KEY}` };
    expect((await fetch(`${t.http}/console/api/overview`, { headers: auth })).status).toBe(200);
    const s = await SseClient.open(`${t.http}/console/api/tail?user=ann`, auth);
    try {
      await s.next((e) => e.event === 'ready');
      const { client } = await TestClient.connect(`${t.ws}?token=${await sign('ann')}`);
      client.send({ type: 'send', msg_id: 'r1', payload: { conversation_id: 'missing', body: 1 } });
      await s.next((e) => e.event === 'error' && e.data.code === 'not_found');
      client.close();
    } finally {
      s.close();
    }
  });

  it('serves the page itself without the key (it holds no data)', async () => {
    expect((await fetch(`${t.http}/console`)).status).toBe(200);
  });
});

describe('debug console shutdown', () => {
  it('ends open tails so the app closes', async () => {
    const t = await startTestApp();
    const s = await SseClient.open(`${t.http}/console/api/tail?conversation=room`);
    await s.next((e) => e.event === 'ready');
    const closed = t.close();
    await expect(s.next(() => false, 5_000)).rejects.toThrow('stream ended');
    await closed;
  });
});

describe('debug console in production', () => {
  const prod = { NODE_ENV: 'production', AUTH_MODE: 'jwt', JWT_SECRET: SECRET, ADMIN_API_KEY: KEY };

  it('is absent (404) unless DEBUG_CONSOLE=true', async () => {
    const t = await startTestApp(prod);
    try {
      expect(t.config.console.enabled).toBe(false);
      for (const path of ['/console', '/console/console.js', '/console/api/overview']) {
        const res = await fetch(`${t.http}${path}`, { headers: { authorization: `Bearer ${KEY}` } });
        expect(res.status).toBe(404);
      }
    } finally {
      await t.close();
    }
  });

  it('is served with DEBUG_CONSOLE=true, behind the key', async () => {
    const t = await startTestApp({ ...prod, DEBUG_CONSOLE: 'true' });
    try {
      expect((await fetch(`${t.http}/console/api/overview`)).status).toBe(401);
      const res = await fetch(`${t.http}/console/api/overview`, {
        headers: { authorization: `Bearer ${KEY}` },
      });
      expect(res.status).toBe(200);
    } finally {
      await t.close();
    }
  });
});
