/**
 * The long-polling transport (issue 12, docs/protocol.md "Long polling") against the real server: a
 * client that can only do HTTP chats with a WebSocket client, its sends are acked only once durable,
 * it resumes after a server restart with exactly what it missed, and hostile or excessive requests get
 * the documented HTTP errors. Runs on the embedded engine (project e2e) and on Kafka/Redis/MariaDB
 * (project e2e-production).
 */
import { randomUUID } from 'node:crypto';
import { AddressInfo } from 'node:net';
import { INestApplication } from '@nestjs/common';
import { startApp } from '../../src/bootstrap';
import { MessageBus } from '../../src/bus/message-bus';
import { loadConfig } from '../../src/config/app-config';
import { SessionMap } from '../../src/session/session-map';
import { databaseFor, isolatedEngineEnv, mysqlAdmin } from '../support/backends';
import { signHs256 } from '../support/jwt';
import { PollTestClient, pollRequest } from '../support/poll-client';
import { productionEngine, putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { Frame, TestClient } from '../support/ws-client';

const LONG = productionEngine ? 40_000 : 10_000;
jest.setTimeout(productionEngine ? 180_000 : 60_000);

const POLL_ENV = {
  POLL_TIMEOUT_MS: '1500',
  POLL_MAX_SESSIONS_PER_USER: '3',
  POLL_MAX_REQUEST_FRAMES: '20',
  POLL_MAX_BODY_BYTES: '200000',
  POLL_MAX_RESPONSE_FRAMES: '5',
  SEND_BURST: '30',
  // Small, so the between-polls buffer overflows in a test (the smallest value allowed).
  MAX_BUFFERED_BYTES: '65536',
};

/** An app that can be stopped and started again on the same port and the same engine state. */
class RestartableApp {
  app: INestApplication | null = null;
  port = 0;
  private readonly name = `lp-${randomUUID().replace(/-/g, '').slice(0, 12)}`;

  constructor(private readonly env: Record<string, string>) {}

  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get ws(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start(): Promise<void> {
    if (productionEngine && this.port === 0)
      await mysqlAdmin(`CREATE DATABASE \`${databaseFor(this.name)}\``);
    const config = loadConfig({
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PORT: String(this.port),
      LOG_LEVEL: 'error',
      ...(productionEngine ? isolatedEngineEnv(this.name) : {}),
      ...this.env,
    });
    this.app = await startApp(config);
    this.port = (this.app.getHttpServer().address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    await this.app?.close();
    this.app = null;
  }

  async dispose(): Promise<void> {
    await this.stop();
    if (productionEngine) await mysqlAdmin(`DROP DATABASE IF EXISTS \`${databaseFor(this.name)}\``);
  }
}

describe(`long polling (${productionEngine ? 'production' : 'embedded'} engine)`, () => {
  let t: TestApp;
  const polls: PollTestClient[] = [];
  const sockets: TestClient[] = [];
  const unique = (name: string) => `${name}-${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    t = await startTestApp(POLL_ENV);
  }, 120_000);

  afterEach(async () => {
    for (const p of polls.splice(0)) await p.stop();
    for (const s of sockets.splice(0)) s.close();
    jest.restoreAllMocks();
  });

  afterAll(async () => {
    await t?.close();
  });

  async function openPoll(user: string, base = t.http, lastMsgId?: string): Promise<PollTestClient> {
    const p = await PollTestClient.open(base, { userId: user }, lastMsgId);
    polls.push(p);
    return p;
  }

  async function openWs(user: string, base = t.ws): Promise<TestClient> {
    const { client } = await TestClient.connect(`${base}?user_id=${user}`);
    sockets.push(client);
    return client;
  }

  it('a long-polling client and a WebSocket client chat both ways, in order, each message once', async () => {
    const lp = unique('lp');
    const ws = unique('ws');
    const conv = unique('c');
    await putConversation(t.http, conv, [lp, ws]);
    const poller = await openPoll(lp);
    expect(poller.welcome.payload).toMatchObject({ user_id: lp, recovered: true });
    const socket = await openWs(ws);

    // HTTP -> WebSocket: the POST itself answers the ack.
    for (let i = 0; i < 3; i++) {
      const res = await poller.post([
        { type: 'send', msg_id: `r${i}`, payload: { conversation_id: conv, body: `lp${i}` } },
      ]);
      expect(res.status).toBe(200);
      expect(res.body).toEqual([
        expect.objectContaining({
          type: 'ack',
          payload: expect.objectContaining({ ref: `r${i}`, conversation_id: conv }),
        }),
      ]);
    }
    expect(bodies(await socket.messages(3, LONG))).toEqual(['lp0', 'lp1', 'lp2']);

    // WebSocket -> HTTP, and the sender's own messages come back to it like on a socket.
    for (let i = 0; i < 3; i++)
      expect((await socket.sendMessage(conv, `ws${i}`, `w${i}`, LONG)).type).toBe('ack');
    const got = await poller.messages(6, LONG);
    expect(bodies(got)).toEqual(['lp0', 'lp1', 'lp2', 'ws0', 'ws1', 'ws2']);
    // Cursors strictly increase; nothing else arrives.
    const cursors = got.map((f) => f.msg_id!);
    expect([...cursors].sort()).toEqual(cursors);
    expect(new Set(cursors).size).toBe(6);
    await expect(poller.next((f) => f.type === 'message', 300)).rejects.toThrow(/no matching frame/);
  });

  it('answers a burst in bounded responses (POLL_MAX_RESPONSE_FRAMES) without losing or repeating any', async () => {
    const lp = unique('lp');
    const ws = unique('ws');
    const conv = unique('c');
    await putConversation(t.http, conv, [lp, ws]);
    const socket = await openWs(ws);
    const poller = await openPoll(lp);
    await poller.stop();
    for (let i = 0; i < 12; i++)
      socket.send({ type: 'send', msg_id: `b${i}`, payload: { conversation_id: conv, body: i } });
    await waitFor(
      () => socket.frames.filter((f) => f.type === 'message').length === 12,
      LONG,
      'the burst to be delivered',
    );
    const sizes: number[] = [];
    while (poller.frames.filter((f) => f.type === 'message').length < 12) {
      const res = await poller.pollOnce();
      expect(res.status).toBe(200);
      sizes.push(res.body.length);
    }
    expect(Math.max(...sizes)).toBeLessThanOrEqual(5);
    expect(bodies(poller.frames.filter((f) => f.type === 'message'))).toEqual([...Array(12).keys()]);
  });

  it('a session whose buffer overflowed between polls resumes from the outbox at the next poll', async () => {
    const lp = unique('lp');
    const ws = unique('ws');
    const conv = unique('c');
    await putConversation(t.http, conv, [lp, ws]);
    const socket = await openWs(ws);
    const poller = await openPoll(lp);
    await poller.stop();
    const sessions = t.app.get(SessionMap);
    const connIds = async () => ((await sessions.lookup([lp])).get(lp) ?? []).map((e) => e.connId);
    const before = await connIds();
    // 25 messages of ~4 KB (within SEND_BURST) while nobody polls: more than MAX_BUFFERED_BYTES (64 KiB) queue up.
    const pad = 'x'.repeat(4000);
    // Sent in groups the WebSocket receiver takes one by one (its own bound is the same 64 KiB).
    for (let group = 0; group < 5; group++) {
      for (let i = group * 5; i < group * 5 + 5; i++) {
        socket.send({ type: 'send', msg_id: `o${i}`, payload: { conversation_id: conv, body: { i, pad } } });
      }
      const n = group * 5 + 5;
      await waitFor(
        () => socket.frames.filter((f) => f.type === 'message').length === n,
        LONG,
        `group ${group} to be delivered`,
      );
    }
    await waitFor(
      async () => !(await connIds()).some((id) => before.includes(id)),
      LONG,
      'the overflowing copy to close',
    );
    while (poller.frames.filter((f) => f.type === 'message').length < 25) {
      const res = await poller.pollOnce();
      expect(res.status).toBe(200);
    }
    const got = poller.frames
      .filter((f) => f.type === 'message')
      .map((f) => (f.payload?.body as { i: number }).i);
    expect(got).toEqual([...Array(25).keys()]);
    const extra = await poller.pollOnce();
    expect(extra.body.filter((f) => f.type === 'message')).toEqual([]);
  });

  it('acks a send only once the bus has it durably; a failed publish answers unavailable', async () => {
    const lp = unique('lp');
    const ws = unique('ws');
    const conv = unique('c');
    await putConversation(t.http, conv, [lp, ws]);
    const socket = await openWs(ws);
    const poller = await openPoll(lp);
    const bus = t.app.get(MessageBus);
    const publish = bus.publish.bind(bus);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered = false;
    let fail = true;
    jest.spyOn(bus, 'publish').mockImplementation(async (m) => {
      if (fail) {
        fail = false;
        throw new Error('bus down');
      }
      entered = true;
      await gate;
      await publish(m);
    });
    const first = await poller.post([
      { type: 'send', msg_id: 'd1', payload: { conversation_id: conv, body: 'x' } },
    ]);
    expect(first.body).toEqual([
      expect.objectContaining({
        type: 'error',
        msg_id: 'd1',
        payload: expect.objectContaining({ code: 'unavailable' }),
      }),
    ]);

    let answered = false;
    const retry = poller
      .post([{ type: 'send', msg_id: 'd1', payload: { conversation_id: conv, body: 'x' } }])
      .then((r) => {
        answered = true;
        return r;
      });
    await waitFor(() => entered, LONG, 'the publish to start');
    expect(answered).toBe(false); // no ack while the bus has not confirmed
    release();
    const res = await retry;
    expect(res.body).toEqual([
      expect.objectContaining({ type: 'ack', payload: expect.objectContaining({ ref: 'd1' }) }),
    ]);
    expect(bodies(await socket.messages(1, LONG))).toEqual(['x']);
    await expect(socket.next((f) => f.type === 'message', 300)).rejects.toThrow();
  });

  it('holds an idle poll for POLL_TIMEOUT_MS and answers it as soon as a delivery arrives', async () => {
    const lp = unique('lp');
    const ws = unique('ws');
    const conv = unique('c');
    await putConversation(t.http, conv, [lp, ws]);
    const socket = await openWs(ws);
    const poller = await openPoll(lp);
    await poller.stop();
    const started = Date.now();
    const idle = await poller.pollOnce();
    expect(idle).toEqual({ status: 200, body: [] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);

    const waiting = poller.pollOnce();
    await socket.sendMessage(conv, 'wake', 'k1', LONG);
    const res = await waiting;
    expect(bodies(res.body)).toEqual(['wake']);
  });

  it('keeps the user online while polling and ends the session after two poll timeouts without a poll (410)', async () => {
    const lp = unique('lp');
    const poller = await openPoll(lp);
    const sessions = t.app.get(SessionMap);
    const entries = async () => (await sessions.lookup([lp])).get(lp) ?? [];
    expect((await entries()).map((e) => e.connId)).toEqual([expect.stringMatching(/^poll:/)]);
    await poller.stop();
    await waitFor(async () => (await entries()).length === 0, 10_000, 'the idle session to end');
    const res = await poller.pollOnce();
    expect(res.status).toBe(410);
    expect(res.body).toEqual({ code: 'session_expired', message: expect.any(String) });
  });

  it('answers bad requests with HTTP errors and {code, message}', async () => {
    const lp = unique('lp');
    const other = unique('other');
    const noAuth = await pollRequest(t.http, 'POST', '/open', { body: {} });
    expect(noAuth).toEqual({ status: 401, body: { code: 'unauthorized', message: expect.any(String) } });
    expect(
      (await pollRequest(t.http, 'POST', '/open', { auth: { userId: lp }, body: { last_msg_id: 5 } })).status,
    ).toBe(400);
    const broken = await pollRequest(t.http, 'POST', '/open', { auth: { userId: lp }, rawBody: '{nope' });
    expect(broken).toEqual({ status: 400, body: { code: 'bad_frame', message: expect.any(String) } });

    // The open body may also be the hello frame itself.
    const viaHello = await pollRequest<{ frames: Frame[] }>(t.http, 'POST', '/open', {
      auth: { userId: lp },
      body: { type: 'hello', payload: {} },
    });
    expect(viaHello.status).toBe(200);
    expect(viaHello.body.frames[0].type).toBe('welcome');

    const poller = await openPoll(lp);
    await poller.stop();
    const sid = encodeURIComponent(poller.sid);
    const q = `?cursor=${encodeURIComponent(poller.cursor)}`;
    const as = (userId: string) => ({ auth: { userId } });
    expect((await pollRequest(t.http, 'GET', `/forged.sig${q}`, as(lp))).body).toMatchObject({
      code: 'not_found',
    });
    expect((await pollRequest(t.http, 'GET', `/${sid}${q}`, as(other))).status).toBe(403);
    // Without a cursor only the node's own copy can answer (this node has one): an empty poll.
    expect(await pollRequest(t.http, 'GET', `/${sid}`, as(lp))).toEqual({ status: 200, body: [] });
    expect((await pollRequest(t.http, 'GET', `/${sid}?cursor=zzz`, as(lp))).status).toBe(400);
    expect(
      (await pollRequest(t.http, 'POST', `/${sid}${q}`, { ...as(lp), body: { type: 'ping' } })).status,
    ).toBe(400);
    const tooMany = await pollRequest(t.http, 'POST', `/${sid}${q}`, {
      ...as(lp),
      body: Array(21).fill({ type: 'ping' }),
    });
    expect(tooMany).toEqual({ status: 413, body: { code: 'too_large', message: expect.any(String) } });
    const bigFrame = {
      type: 'send',
      msg_id: 'big',
      payload: { conversation_id: 'c', body: 'x'.repeat(70_000) },
    };
    expect((await pollRequest(t.http, 'POST', `/${sid}${q}`, { ...as(lp), body: [bigFrame] })).status).toBe(
      413,
    );
    const bigBody = Array(4).fill({ type: 'ping', pad: 'x'.repeat(60_000) });
    expect((await pollRequest(t.http, 'POST', `/${sid}${q}`, { ...as(lp), body: bigBody })).status).toBe(413);

    // Frames inside a POST get the protocol's per-frame answers, in order; the session goes on.
    const mixed = await poller.post([
      { type: 'nope' },
      { type: 'ping' },
      { type: 'send', msg_id: 'm', payload: {} },
      { type: 'send', msg_id: 'n', payload: { conversation_id: unique('missing'), body: 1 } },
    ]);
    expect(mixed.status).toBe(200);
    expect(mixed.body.map((f) => [f.type, f.payload?.code])).toEqual([
      ['error', 'unknown_type'],
      ['pong', undefined],
      ['error', 'bad_frame'],
      ['error', 'not_found'],
    ]);

    // Ended by the client: the id is gone.
    expect((await pollRequest(t.http, 'DELETE', `/${sid}`, as(lp))).status).toBe(204);
    await waitFor(
      async () => (await pollRequest(t.http, 'GET', `/${sid}${q}`, as(lp))).status === 410,
      5_000,
      '410 after DELETE',
    );
  });

  it('caps live sessions per user (429) and applies the send rate limit of the WebSocket path', async () => {
    const lp = unique('lp');
    await openPoll(lp);
    await openPoll(lp);
    await openPoll(lp);
    const refused = await pollRequest(t.http, 'POST', '/open', { auth: { userId: lp }, body: {} });
    expect(refused).toEqual({ status: 429, body: { code: 'rate_limited', message: expect.any(String) } });

    // SEND_BURST=30: of 40 sends in quick succession, the ones over the bucket are refused rate_limited.
    // On an app of its own that refills 1 send/s: at the default 50/s a loaded machine that takes a
    // second over the 40 refilled the bucket and refused none (seen once).
    const slow = await startTestApp({ ...POLL_ENV, SEND_RATE_PER_SEC: '1' });
    try {
      await expectSendRateLimit(slow.http, unique('lp'));
    } finally {
      await slow.close();
    }
  });

  async function expectSendRateLimit(http: string, lp: string): Promise<void> {
    const third = await openPoll(lp, http);
    const conv = unique('c');
    await putConversation(http, conv, [lp]);
    const sends = (from: number) =>
      Array.from({ length: 20 }, (_, i) => ({
        type: 'send',
        msg_id: `s${from + i}`,
        payload: { conversation_id: conv, body: i },
      }));
    // Both at once: the bucket has no time to refill in between, whatever the engine's ack latency.
    const [a, b] = await Promise.all([third.post(sends(0)), third.post(sends(20))]);
    const answers = [...a.body, ...b.body];
    expect(answers).toHaveLength(40);
    const limited = answers.filter((f) => f.type === 'error' && f.payload?.code === 'rate_limited');
    expect(limited.length).toBeGreaterThanOrEqual(5);
    expect(answers.filter((f) => f.type === 'ack').length).toBe(40 - limited.length);
  }

  it('refuses a token in the URL outside dev mode and takes it as a bearer header', async () => {
    const secret = 'longpoll-e2e-secret-'.padEnd(40, 'x');
    const jwt = await startTestApp({
      ...POLL_ENV,
      AUTH_MODE: 'jwt',
      JWT_SECRET: secret,
      ADMIN_API_KEY: 'k'.repeat(32),
    });
    try {
      const user = unique('jw');
      const token = await signHs256(secret, user);
      const inUrl = await fetch(`${jwt.http}/v1/poll/open?token=${token}`, { method: 'POST' });
      expect(inUrl.status).toBe(400);
      expect(
        (await pollRequest(jwt.http, 'POST', '/open', { auth: { userId: user }, body: {} })).status,
      ).toBe(401);
      const bad = await pollRequest(jwt.http, 'POST', '/open', { auth: { token: `${token}x` }, body: {} });
      expect(bad.status).toBe(401);
      const poller = await PollTestClient.open(jwt.http, { token }, undefined);
      polls.push(poller);
      expect(poller.welcome.payload?.user_id).toBe(user);
      expect((await poller.post([{ type: 'ping' }])).body).toEqual([{ type: 'pong' }]);
      const stranger = await signHs256(secret, unique('x'));
      const q = `?cursor=${encodeURIComponent(poller.cursor)}`;
      expect(
        (
          await pollRequest(jwt.http, 'GET', `/${encodeURIComponent(poller.sid)}${q}`, {
            auth: { token: stranger },
          })
        ).status,
      ).toBe(403);
    } finally {
      for (const p of polls.splice(0)) await p.stop();
      await jwt.close();
    }
  });
});

describe(`long polling across a server restart (${productionEngine ? 'production' : 'embedded'} engine)`, () => {
  it('resumes with exactly the deliveries it missed', async () => {
    const server = new RestartableApp({ POLL_TIMEOUT_MS: '2000', POLL_SESSION_SECRET: 's'.repeat(32) });
    const clients: { stop(): unknown }[] = [];
    try {
      await server.start();
      const lp = `lp-${randomUUID().slice(0, 8)}`;
      const ws = `ws-${randomUUID().slice(0, 8)}`;
      const conv = `c-${randomUUID().slice(0, 8)}`;
      await putConversation(server.http, conv, [lp, ws]);
      const poller = await PollTestClient.open(server.http, { userId: lp });
      clients.push(poller);
      let { client: socket } = await TestClient.connect(`${server.ws}?user_id=${ws}`);
      clients.push({ stop: () => socket.close() });
      await socket.sendMessage(conv, 'before', 'p1', LONG);
      expect(bodies(await poller.messages(1, LONG))).toEqual(['before']);

      await server.stop();
      await waitFor(() => poller.failure !== null || poller.stopped, LONG, 'the poll to fail').catch(
        () => undefined,
      );
      await poller.stop();
      await server.start();
      if (!productionEngine) await putConversation(server.http, conv, [lp, ws]); // the embedded directory restarted empty
      ({ client: socket } = await TestClient.connect(`${server.ws}?user_id=${ws}`));
      for (let i = 0; i < 3; i++) await socket.sendMessage(conv, `missed${i}`, `m${i}`, LONG);

      // The old session id: on the production engines its entry was removed by the drain, so 410.
      const stale = await poller.pollOnce();
      expect(stale.status).toBe(410);
      const resumed = await PollTestClient.open(server.http, { userId: lp }, poller.cursor);
      clients.push(resumed);
      // The embedded engine lost its outbox with the restart (new epoch): it says so.
      expect(resumed.welcome.payload?.recovered).toBe(productionEngine);
      const got = await resumed.messages(3, LONG);
      expect(bodies(got)).toEqual(['missed0', 'missed1', 'missed2']);
      await expect(resumed.next((f) => f.type === 'message', 500)).rejects.toThrow();
      socket.close();
    } finally {
      for (const c of clients) await c.stop();
      await server.dispose();
    }
  });
});

function bodies(frames: Frame[]): unknown[] {
  return frames.map((f) => f.payload?.body);
}
