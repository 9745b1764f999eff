import { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { connect as sdkConnect, RelayClient } from '../../packages/client/src/index';
import type { PresenceChange } from '../../packages/client/src/index';
import { TcpProxy } from '../support/tcp-proxy';
import { productionEngine, putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { Frame, TestClient } from '../support/ws-client';

/**
 * Protocol v1.1 ephemeral live features, typing and presence, end to end with raw WebSocket clients
 * (both engines: this file is in the e2e-production list).
 */
const GRACE_MS = 400;

// Booting an app on the production engines (a fresh Kafka topic, a database) takes seconds under load.
jest.setTimeout(productionEngine ? 60_000 : 30_000);

describe('live features: typing and presence (v1.1)', () => {
  let t: TestApp;
  const clients: TestClient[] = [];
  const connect = async (user: string) => {
    const { client } = await TestClient.connect(`${t.ws}?user_id=${user}`);
    clients.push(client);
    return client;
  };
  let run = 0;
  let u: (name: string) => string;

  beforeAll(async () => {
    t = await startTestApp({ PRESENCE_GRACE_MS: String(GRACE_MS), PRESENCE_MAX_MEMBERS: '5' });
  });
  beforeEach(() => {
    const r = ++run;
    u = (name) => `${name}-${r}`;
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.terminate();
  });
  afterAll(() => t.close());

  const typing = (c: TestClient, conversation: string, state: 'start' | 'stop', msgId?: string) =>
    c.send({
      type: 'typing',
      ...(msgId ? { msg_id: msgId } : {}),
      payload: { conversation_id: conversation, state },
    });
  const isTyping = (f: Frame) => f.type === 'typing';
  const subscribe = (c: TestClient, conversation: string, msgId?: string) =>
    c.send({
      type: 'presence.subscribe',
      ...(msgId ? { msg_id: msgId } : {}),
      payload: { conversation_id: conversation },
    });
  const snapshotOf = (conversation: string) => (f: Frame) =>
    f.type === 'presence' && f.payload?.conversation_id === conversation && 'online' in (f.payload ?? {});
  const changeOf = (conversation: string, user: string, status?: string) => (f: Frame) =>
    f.type === 'presence' &&
    f.payload?.conversation_id === conversation &&
    f.payload?.user_id === user &&
    (status === undefined || f.payload?.status === status);
  const errorOf = (ref: string) => (f: Frame) => f.type === 'error' && f.msg_id === ref;

  describe('typing', () => {
    it("reaches every device of the other members, never the typer's own devices, with expires_in_ms", async () => {
      const [ann, bob, cy, conv] = [u('ann'), u('bob'), u('cy'), u('c')];
      await putConversation(t.http, conv, [ann, bob, cy]);
      const ann1 = await connect(ann);
      const ann2 = await connect(ann);
      const bob1 = await connect(bob);
      const bob2 = await connect(bob);
      const cy1 = await connect(cy);
      typing(ann1, conv, 'start');
      for (const c of [bob1, bob2, cy1]) {
        const f = await c.next(isTyping);
        expect(f.payload).toEqual({
          conversation_id: conv,
          user_id: ann,
          state: 'start',
          expires_in_ms: 6000,
        });
      }
      typing(ann1, conv, 'stop');
      for (const c of [bob1, bob2, cy1]) {
        const f = await c.next(isTyping);
        expect(f.payload).toMatchObject({ conversation_id: conv, user_id: ann, state: 'stop' });
      }
      // The typer's devices got nothing: a ping round trip on each proves everything sent is in.
      for (const c of [ann1, ann2]) {
        c.send({ type: 'ping' });
        await c.next((f) => f.type === 'pong');
        expect(c.frames.filter(isTyping)).toEqual([]);
      }
    });

    it('relays at most one start per user per conversation per interval; stop is relayed, then start again', async () => {
      const [ann, bob, conv] = [u('ann'), u('bob'), u('c')];
      await putConversation(t.http, conv, [ann, bob]);
      const a = await connect(ann);
      const a2 = await connect(ann);
      const b = await connect(bob);
      for (let i = 0; i < 5; i++) typing(i % 2 ? a2 : a, conv, 'start');
      typing(a, conv, 'stop');
      typing(a, conv, 'start');
      await waitFor(() => b.frames.filter(isTyping).length >= 3, 5_000, 'start, stop, start');
      // stop frames the typer had nothing showing for are dropped, so a ping settles the count
      b.send({ type: 'ping' });
      await b.next((f) => f.type === 'pong');
      expect(b.frames.filter(isTyping).map((f) => f.payload?.state)).toEqual(['start', 'stop', 'start']);
    });

    it('a typer who keeps sending start gets one relayed per 2 s interval', async () => {
      const [ann, bob, conv] = [u('ann'), u('bob'), u('c')];
      await putConversation(t.http, conv, [ann, bob]);
      const a = await connect(ann);
      const b = await connect(bob);
      const arrivals: number[] = [];
      b.ws.on('message', (data) => {
        if ((JSON.parse(data.toString()) as Frame).type === 'typing') arrivals.push(Date.now());
      });
      // A keystroke every 100 ms (under the typing rate limit) until the second start shows.
      await waitFor(
        () => {
          typing(a, conv, 'start');
          return arrivals.length >= 2;
        },
        6_000,
        'a second relayed start',
        100,
      );
      expect(arrivals[1] - arrivals[0]).toBeGreaterThanOrEqual(1_900);
      expect(arrivals[1] - arrivals[0]).toBeLessThan(3_000);
      expect(a.frames.filter((f) => f.type === 'error')).toEqual([]);
    });

    it("sends stop when the typer's last connection closes", async () => {
      const [ann, bob, conv] = [u('ann'), u('bob'), u('c')];
      await putConversation(t.http, conv, [ann, bob]);
      const a1 = await connect(ann);
      const a2 = await connect(ann);
      const b = await connect(bob);
      typing(a1, conv, 'start');
      expect((await b.next(isTyping)).payload?.state).toBe('start');
      a1.close();
      await a1.waitClosed();
      a2.close(); // the last one
      const stop = await b.next(isTyping);
      expect(stop.payload).toMatchObject({ conversation_id: conv, user_id: ann, state: 'stop' });
    });

    it('refuses non-members (forbidden), unknown conversations (not_found) and bad states (bad_frame)', async () => {
      const [ann, bob, conv] = [u('ann'), u('bob'), u('c')];
      await putConversation(t.http, conv, [bob]);
      const a = await connect(ann);
      typing(a, conv, 'start', 't1');
      expect((await a.next(errorOf('t1'))).payload?.code).toBe('forbidden');
      typing(a, u('nowhere'), 'start', 't2');
      expect((await a.next(errorOf('t2'))).payload?.code).toBe('not_found');
      a.send({ type: 'typing', msg_id: 't3', payload: { conversation_id: conv, state: 'typing-hard' } });
      expect((await a.next(errorOf('t3'))).payload?.code).toBe('bad_frame');
      a.send({ type: 'typing', msg_id: 't4', payload: { conversation_id: 'bad id!', state: 'start' } });
      expect((await a.next(errorOf('t4'))).payload?.code).toBe('bad_frame');
    });

    it('answers rate_limited to a flood of typing frames and keeps the connection', async () => {
      const [ann, conv] = [u('ann'), u('c')];
      await putConversation(t.http, conv, [ann, u('bob')]);
      const a = await connect(ann);
      for (let i = 0; i < 40; i++) typing(a, conv, 'start', `f${i}`);
      await a.next((f) => f.type === 'error' && f.payload?.code === 'rate_limited');
      a.send({ type: 'ping' });
      await a.next((f) => f.type === 'pong');
    });
  });

  describe('presence', () => {
    it('subscribe: a snapshot of the online members, then online and offline (after the grace) changes', async () => {
      const [ann, bob, cy, conv] = [u('ann'), u('bob'), u('cy'), u('c')];
      await putConversation(t.http, conv, [ann, bob, cy]);
      const a = await connect(ann);
      const b = await connect(bob);
      subscribe(a, conv);
      const snap = await a.next(snapshotOf(conv));
      expect(snap.payload).toEqual({ conversation_id: conv, online: [ann, bob] });
      const c = await connect(cy);
      expect((await a.next(changeOf(conv, cy))).payload).toEqual({
        conversation_id: conv,
        user_id: cy,
        status: 'online',
      });
      const closedAt = Date.now();
      c.close();
      expect((await a.next(changeOf(conv, cy), 5_000)).payload?.status).toBe('offline');
      expect(Date.now() - closedAt).toBeGreaterThanOrEqual(GRACE_MS - 50);
      b.terminate();
      expect((await a.next(changeOf(conv, bob), 5_000)).payload?.status).toBe('offline');
    });

    it('a quick reconnect within the grace does not flap', async () => {
      const [ann, bob, dee, conv] = [u('ann'), u('bob'), u('dee'), u('c')];
      await putConversation(t.http, conv, [ann, bob, dee]);
      const a = await connect(ann);
      const b = await connect(bob);
      const d = await connect(dee);
      subscribe(a, conv);
      expect((await a.next(snapshotOf(conv))).payload?.online).toEqual([ann, bob, dee]);
      b.close();
      await b.waitClosed();
      d.close(); // closes after bob and stays away: its offline comes after bob's would have
      await d.waitClosed();
      await connect(bob);
      await a.next(changeOf(conv, dee, 'offline'), 5_000);
      expect(a.frames.filter(changeOf(conv, bob))).toEqual([]);
    });

    it('presence.unsubscribe stops the changes; a re-subscribe gets a fresh snapshot', async () => {
      const [ann, bob, cy, conv] = [u('ann'), u('bob'), u('cy'), u('c')];
      await putConversation(t.http, conv, [ann, bob, cy]);
      const a = await connect(ann);
      subscribe(a, conv);
      expect((await a.next(snapshotOf(conv))).payload?.online).toEqual([ann]);
      a.send({ type: 'presence.unsubscribe', payload: { conversation_id: conv } });
      await connect(bob);
      // A second subscriber on another connection sees bob, so the change was announced.
      const a2 = await connect(ann);
      subscribe(a2, conv);
      expect((await a2.next(snapshotOf(conv))).payload?.online).toEqual([ann, bob]);
      await connect(cy);
      await a2.next(changeOf(conv, cy, 'online'));
      a.send({ type: 'ping' });
      await a.next((f) => f.type === 'pong');
      expect(a.frames.filter((f) => f.type === 'presence')).toHaveLength(1);
      subscribe(a, conv);
      expect((await a.next(snapshotOf(conv))).payload?.online).toEqual([ann, bob, cy]);
    });

    it('refuses non-members, unknown conversations and conversations over PRESENCE_MAX_MEMBERS', async () => {
      const [ann, conv, big] = [u('ann'), u('c'), u('big')];
      await putConversation(t.http, conv, [u('bob')]);
      await putConversation(t.http, big, [ann, ...[1, 2, 3, 4, 5].map((i) => u(`m${i}`))]);
      const a = await connect(ann);
      subscribe(a, conv, 'p1');
      expect((await a.next(errorOf('p1'))).payload?.code).toBe('forbidden');
      subscribe(a, u('nowhere'), 'p2');
      expect((await a.next(errorOf('p2'))).payload?.code).toBe('not_found');
      subscribe(a, big, 'p3');
      const tooLarge = await a.next(errorOf('p3'));
      expect(tooLarge.payload?.code).toBe('too_large');
      expect(tooLarge.payload?.message).toContain('at most 5');
      a.send({ type: 'presence.subscribe', msg_id: 'p4', payload: {} });
      expect((await a.next(errorOf('p4'))).payload?.code).toBe('bad_frame');
    });

    it('bounds the members one connection watches: 5 × PRESENCE_MAX_MEMBERS', async () => {
      const ann = u('ann');
      const convs = [1, 2, 3, 4, 5, 6].map((i) => u(`g${i}`));
      for (const c of convs)
        await putConversation(t.http, c, [ann, ...[1, 2, 3, 4].map((i) => u(`${c}m${i}`))]);
      const a = await connect(ann);
      for (const c of convs.slice(0, 5)) {
        subscribe(a, c);
        await a.next(snapshotOf(c));
      }
      subscribe(a, convs[5], 'w6');
      const refused = await a.next(errorOf('w6'));
      expect(refused.payload).toMatchObject({ code: 'rate_limited' });
      expect(refused.payload?.message).toContain('25 members');
      a.send({ type: 'presence.unsubscribe', payload: { conversation_id: convs[0] } });
      subscribe(a, convs[5]);
      expect((await a.next(snapshotOf(convs[5]))).payload?.online).toEqual([ann]);
    });

    it('GET /v1/presence answers the status of the users asked about', async () => {
      const [ann, bob] = [u('ann'), u('bob')];
      await connect(ann);
      const res = await fetch(`${t.http}/v1/presence?user_id=${ann}&user_id=${bob}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        users: [
          { user_id: ann, status: 'online' },
          { user_id: bob, status: 'offline' },
        ],
        online: [ann],
      });
      expect((await fetch(`${t.http}/v1/presence`)).status).toBe(400);
      expect((await fetch(`${t.http}/v1/presence?user_id=bad%20id`)).status).toBe(400);
    });
  });
});

describe('SDK: typing() and subscribePresence() against the server', () => {
  let t: TestApp;
  let proxy: TcpProxy;
  const sdks: RelayClient[] = [];
  const raws: TestClient[] = [];
  const sdk = (user: string, viaProxy = false) => {
    const port = viaProxy ? proxy.port : (t.app.getHttpServer().address() as AddressInfo).port;
    const c = sdkConnect({
      url: `ws://127.0.0.1:${port}/ws`,
      userId: user,
      WebSocket: WebSocket as never,
      backoffBaseMs: 20,
      backoffCapMs: 200,
      typingIntervalMs: 2000,
      typingIdleMs: 300,
    });
    sdks.push(c);
    return c;
  };

  beforeAll(async () => {
    t = await startTestApp({ PRESENCE_GRACE_MS: String(GRACE_MS) });
    proxy = new TcpProxy((t.app.getHttpServer().address() as AddressInfo).port);
    await proxy.start();
  });
  afterAll(async () => {
    await Promise.all(sdks.map((c) => c.close()));
    for (const r of raws) r.terminate();
    await proxy.stop();
    await t.close();
  });

  it('typing() on every keystroke relays one start, then stop once idle', async () => {
    await putConversation(t.http, 'sdk-ty', ['sa', 'sb']);
    const a = sdk('sa');
    await a.whenOpen();
    const { client: b } = await TestClient.connect(`${t.ws}?user_id=sb`);
    raws.push(b);
    for (let i = 0; i < 5; i++) a.typing('sdk-ty');
    expect((await b.next((f) => f.type === 'typing')).payload?.state).toBe('start');
    expect((await b.next((f) => f.type === 'typing')).payload?.state).toBe('stop'); // idle after 300 ms
    expect(b.frames.filter((f) => f.type === 'typing')).toHaveLength(2);
  });

  it('subscribePresence() keeps the live set across a reconnect and reports what changed meanwhile', async () => {
    await putConversation(t.http, 'sdk-pr', ['pa', 'pb', 'pc']);
    const a = sdk('pa', true);
    const sub = a.subscribePresence('sdk-pr');
    await sub.whenReady();
    expect([...sub.online]).toEqual(['pa']);
    const changes: PresenceChange[] = [];
    sub.on('change', (c) => changes.push(c));
    const b = sdk('pb');
    await waitFor(() => sub.online.has('pb'), 5_000, 'pb online');
    expect(proxy.cut()).toBeGreaterThan(0);
    const c = sdk('pc'); // comes online while pa is away
    await c.whenOpen();
    await b.close(); // goes offline (after the grace) while pa may be away
    await waitFor(() => sub.online.has('pc') && !sub.online.has('pb'), 10_000, 'the set after the reconnect');
    // Live or from the snapshot diff, depending on when the reconnect landed: each change once.
    expect(changes.map((x) => `${x.userId}:${x.status}`).sort()).toEqual([
      'pb:offline',
      'pb:online',
      'pc:online',
    ]);
    expect(a.state).toBe('open');
  });
});

describe('GET /v1/presence outside dev mode', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ AUTH_MODE: 'jwt', JWT_SECRET: 'x'.repeat(32), ADMIN_API_KEY: 'k'.repeat(32) });
  });
  afterAll(() => t.close());

  it('needs the admin key', async () => {
    const url = `${t.http}/v1/presence?user_id=someone`;
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(url, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const ok = await fetch(url, { headers: { authorization: `Bearer ${'k'.repeat(32)}` } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ users: [{ user_id: 'someone', status: 'offline' }], online: [] });
  });
});
