import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { Frame, TestClient } from '../support/ws-client';

/** The whole real-time path on the embedded engine, driven by real WebSocket clients. */
describe('messaging core (embedded engine)', () => {
  let t: TestApp;
  const clients: TestClient[] = [];
  const connect = async (user: string, last?: string) => {
    const c = await TestClient.connect(`${t.ws}?user_id=${user}`, last);
    clients.push(c.client);
    return c;
  };
  let n = 0;
  const ref = () => `r${++n}`;
  // Every test gets its own users and conversations: a fresh device is owed everything retained.
  let run = 0;
  let alice = '',
    bob = '',
    carol = '',
    dave = '',
    c1 = '',
    c2 = '';

  beforeAll(async () => {
    t = await startTestApp({ SEND_RATE_PER_SEC: '1000', SEND_BURST: '1000' });
  });
  beforeEach(async () => {
    run++;
    [alice, bob, carol, dave, c1, c2] = ['alice', 'bob', 'carol', 'dave', 'c1', 'c2'].map(
      (x) => `${x}${run}`,
    );
    await putConversation(t.http, c1, [alice, bob]);
    await putConversation(t.http, c2, [carol, dave]);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.terminate();
  });
  afterAll(() => t.close());

  it('welcomes a fresh device with its user id, node, heartbeat and recovered:true', async () => {
    const { welcome } = await connect(`erin${run}`);
    expect(welcome.payload).toMatchObject({
      user_id: `erin${run}`,
      node_id: t.config.nodeId,
      recovered: true,
    });
    expect(welcome.payload?.heartbeat_ms).toBe(t.config.gateway.heartbeatMs);
  });

  it('two users chat: every member, the sender included, gets each message, acked with the server id', async () => {
    const { client: ali } = await connect(alice);
    const { client: bo } = await connect(bob);
    const ack = await ali.sendMessage(c1, { text: 'hi bob' }, 'a-1');
    expect(ack.type).toBe('ack');
    expect(ack.payload).toMatchObject({ ref: 'a-1', conversation_id: c1 });
    const id = ack.msg_id!;
    const [atBob] = await bo.messages(1);
    const [atAlice] = await ali.messages(1);
    for (const m of [atBob, atAlice]) {
      expect(m.payload).toEqual({
        id,
        conversation_id: c1,
        from: alice,
        ts: ack.payload!.ts,
        body: { text: 'hi bob' },
        seq: 1, // v1.1: the conversation order number (an added field; v1 clients ignore it)
      });
    }
    const reply = await bo.sendMessage(c1, 'hello alice', 'b-1');
    const [back] = await ali.messages(1);
    expect(back.payload).toMatchObject({ id: reply.msg_id, from: bob, body: 'hello alice' });
    expect(back.msg_id! > atAlice.msg_id!).toBe(true); // cursors increase per user
  });

  it('a third connection of the same user receives every message too', async () => {
    const { client: alice1 } = await connect(alice);
    const { client: alice2 } = await connect(alice);
    const { client: bo } = await connect(bob);
    await bo.sendMessage(c1, 'one', ref());
    await alice1.sendMessage(c1, 'two', ref());
    for (const c of [alice1, alice2]) {
      const got = await c.messages(2);
      expect(got.map((m) => m.payload?.body)).toEqual(['one', 'two']);
    }
  });

  it('a client that reconnects with its cursor gets exactly the missed messages in order, then live ones', async () => {
    const { client: ali } = await connect(alice);
    const { client: bo } = await connect(bob);
    await ali.sendMessage(c1, 'before', ref());
    const [seen] = await bo.messages(1);
    bo.terminate();
    await bo.waitClosed();
    for (const body of ['missed-1', 'missed-2', 'missed-3']) await ali.sendMessage(c1, body, ref());
    const { client: bob2, welcome } = await connect(bob, seen.msg_id);
    expect(welcome.payload?.recovered).toBe(true);
    const replayed = await bob2.messages(3);
    expect(replayed.map((m) => m.payload?.body)).toEqual(['missed-1', 'missed-2', 'missed-3']);
    await ali.sendMessage(c1, 'live', ref());
    const [live] = await bob2.messages(1);
    expect(live.payload?.body).toBe('live');
    const cursors = [seen, ...replayed, live].map((m) => m.msg_id!);
    expect([...cursors].sort()).toEqual(cursors);
    expect(new Set(cursors).size).toBe(cursors.length);
    expect(bob2.pending('message')).toHaveLength(0);
  });

  it('replays every retained delivery to a fresh device, and reports recovered:false for a cursor it cannot honour', async () => {
    const { client: car } = await connect(carol);
    await car.sendMessage(c2, 'x', ref());
    await car.sendMessage(c2, 'y', ref());
    const { client: dav, welcome } = await connect(dave);
    expect(welcome.payload?.recovered).toBe(true);
    expect((await dav.messages(2)).map((m) => m.payload?.body)).toEqual(['x', 'y']);
    const { client: dave2, welcome: w2 } = await connect(dave, 'not-a-cursor-of-this-store-000000000001');
    expect(w2.payload?.recovered).toBe(false);
    expect((await dave2.messages(2)).map((m) => m.payload?.body)).toEqual(['x', 'y']);
  });

  it('resending a client ref returns the same ack and creates no second message', async () => {
    const { client: ali } = await connect(alice);
    const { client: bo } = await connect(bob);
    const first = await ali.sendMessage(c1, 'once', 'dup-1');
    const second = await ali.sendMessage(c1, 'once', 'dup-1');
    expect(second).toEqual(first);
    await ali.sendMessage(c1, 'marker', ref());
    const got = await bo.messages(2);
    expect(got.map((m) => m.payload?.body)).toEqual(['once', 'marker']);
  });

  it("keeps a sender's messages in the order it sent them, acks included", async () => {
    const { client: ali } = await connect(alice);
    const { client: bo } = await connect(bob);
    const refs = Array.from({ length: 50 }, (_, i) => `burst-${i}`);
    for (const [i, r] of refs.entries()) {
      ali.send({ type: 'send', msg_id: r, payload: { conversation_id: c1, body: i } });
    }
    const acks: Frame[] = [];
    for (let i = 0; i < refs.length; i++) acks.push(await ali.next((f) => f.type === 'ack'));
    expect(acks.map((a) => a.payload?.ref)).toEqual(refs);
    const got = await bo.messages(50);
    expect(got.map((m) => m.payload?.body)).toEqual(refs.map((_, i) => i));
  });

  describe('errors: each code comes from the frame that should produce it, and the connection stays usable', () => {
    const stillUsable = async (c: TestClient) => {
      c.send({ type: 'ping' });
      await c.next((f) => f.type === 'pong');
    };

    it('handshake_required before hello', async () => {
      const c = await TestClient.open(`${t.ws}?user_id=${alice}`);
      clients.push(c);
      c.send({ type: 'send', msg_id: 'early', payload: { conversation_id: c1, body: 1 } });
      const err = await c.next((f) => f.type === 'error');
      expect(err).toMatchObject({ msg_id: 'early', payload: { code: 'handshake_required' } });
      c.send({ type: 'hello', payload: {} });
      await c.next((f) => f.type === 'welcome');
    });

    it.each([
      ['not JSON', '{nope', undefined],
      ['no type', { msg_id: 'x1' }, undefined],
      ['send without payload', { type: 'send', msg_id: 'x2' }, 'x2'],
      ['send with an empty ref', { type: 'send', msg_id: '', payload: { conversation_id: c1, body: 1 } }, ''],
      [
        'send with a ref over 64 chars',
        { type: 'send', msg_id: 'r'.repeat(65), payload: { conversation_id: c1, body: 1 } },
        'r'.repeat(64), // errors echo at most the first 64 characters of a ref (issue 7)
      ],
      ['send without body', { type: 'send', msg_id: 'x3', payload: { conversation_id: c1 } }, 'x3'],
      ['confirm without cursor', { type: 'confirm' }, undefined],
    ])('bad_frame: %s', async (_name, frame, expectedRef) => {
      const { client } = await connect(alice);
      client.send(frame);
      const err = await client.next((f) => f.type === 'error');
      expect(err.payload?.code).toBe('bad_frame');
      expect(err.msg_id).toBe(expectedRef);
      expect(typeof err.payload?.message).toBe('string');
      await stillUsable(client);
    });

    it('unknown_type', async () => {
      const { client } = await connect(alice);
      client.send({ type: 'subscribe', msg_id: 'u1' });
      expect(await client.next((f) => f.type === 'error')).toMatchObject({
        msg_id: 'u1',
        payload: { code: 'unknown_type' },
      });
      await stillUsable(client);
    });

    it('not_found and forbidden', async () => {
      const { client } = await connect(alice);
      expect((await client.sendMessage('nope', 1, 'nf')).payload?.code).toBe('not_found');
      expect((await client.sendMessage(c2, 1, 'fb')).payload?.code).toBe('forbidden');
      await stillUsable(client);
      expect((await client.sendMessage(c1, 'fine', 'ok')).type).toBe('ack');
    });

    it('bad hello twice is refused without closing', async () => {
      const { client } = await connect(alice);
      client.send({ type: 'hello', payload: {} });
      expect((await client.next((f) => f.type === 'error')).payload?.code).toBe('bad_frame');
      await stillUsable(client);
    });

    it('binary frames are refused as bad_frame', async () => {
      const { client } = await connect(alice);
      client.ws.send(Buffer.from([1, 2, 3]));
      expect((await client.next((f) => f.type === 'error')).payload?.code).toBe('bad_frame');
      await stillUsable(client);
    });
  });

  it('answers ping with pong and accepts confirm', async () => {
    const { client } = await connect(alice);
    client.send({ type: 'confirm', msg_id: 'whatever-000000000001' });
    client.send({ type: 'ping' });
    expect((await client.next()).type).toBe('pong');
  });
});

describe('gateway limits and lifecycle', () => {
  it('rate_limited past the send burst, and the connection stays usable', async () => {
    const t = await startTestApp({ SEND_RATE_PER_SEC: '1', SEND_BURST: '2' });
    try {
      await putConversation(t.http, 'c', ['u']);
      const { client } = await TestClient.connect(`${t.ws}?user_id=u`);
      for (const r of ['a', 'b', 'c'])
        client.send({ type: 'send', msg_id: r, payload: { conversation_id: 'c', body: r } });
      const err = await client.next((f) => f.type === 'error');
      expect(err).toMatchObject({ msg_id: 'c', payload: { code: 'rate_limited' } });
      await client.next((f) => f.type === 'ack' && f.payload?.ref === 'a');
      await client.next((f) => f.type === 'ack' && f.payload?.ref === 'b');
      client.send({ type: 'ping' });
      await client.next((f) => f.type === 'pong');
      client.terminate();
    } finally {
      await t.close();
    }
  });

  it('too_large then 1009 for a frame over the limit; 1009 for a huge one', async () => {
    const t = await startTestApp({ MAX_FRAME_BYTES: '1024' });
    try {
      const { client } = await TestClient.connect(`${t.ws}?user_id=u`);
      client.send({ type: 'send', msg_id: 'big', payload: { conversation_id: 'c', body: 'x'.repeat(1500) } });
      expect((await client.next((f) => f.type === 'error')).payload?.code).toBe('too_large');
      expect(await client.waitClosed()).toBe(1009);
      const { client: c2 } = await TestClient.connect(`${t.ws}?user_id=u`);
      c2.send('x'.repeat(100_000));
      expect(await c2.waitClosed()).toBe(1009);
    } finally {
      await t.close();
    }
  });

  it('closes with 4008 when hello does not come in time', async () => {
    const t = await startTestApp({ HANDSHAKE_TIMEOUT_MS: '300' });
    try {
      const c = await TestClient.open(`${t.ws}?user_id=u`);
      expect(await c.waitClosed(3_000)).toBe(4008);
    } finally {
      await t.close();
    }
  });

  it('terminates a connection that stops answering pings and forgets its session', async () => {
    const t = await startTestApp({ HEARTBEAT_MS: '100' });
    try {
      const { client: silent } = await (async () => {
        const c = await TestClient.open(`${t.ws}?user_id=ghost`, { autoPong: false });
        c.send({ type: 'hello', payload: {} });
        await c.next((f) => f.type === 'welcome');
        return { client: c };
      })();
      const { client: healthy } = await TestClient.connect(`${t.ws}?user_id=alive`);
      expect(await silent.waitClosed(3_000)).toBe(1006);
      const { SessionMap } = await import('../../src/session/session-map');
      const sessions = t.app.get(SessionMap);
      await waitFor(
        async () => !(await sessions.lookup(['ghost'])).has('ghost'),
        2_000,
        'ghost session removed',
      );
      expect((await sessions.lookup(['alive'])).get('alive')).toHaveLength(1);
      healthy.terminate();
    } finally {
      await t.close();
    }
  });

  it('on shutdown closes every connection with 1012 (reconnect elsewhere)', async () => {
    const t = await startTestApp();
    const { client } = await TestClient.connect(`${t.ws}?user_id=u`);
    const closed = client.waitClosed();
    await t.close();
    expect(await closed).toBe(1012);
  });

  it('reports every dependency in /health/ready and liveness in /health/live', async () => {
    const t = await startTestApp();
    try {
      const ready = await fetch(`${t.http}/health/ready`);
      expect(ready.status).toBe(200);
      const body = (await ready.json()) as {
        status: string;
        details: Record<string, { status: string; engine: string }>;
      };
      expect(body.status).toBe('ok');
      expect(Object.keys(body.details).sort()).toEqual([
        'bus',
        'channels',
        'directory',
        'outbox',
        'sessions',
      ]);
      for (const d of Object.values(body.details)) expect(d.status).toBe('up');
      expect((await fetch(`${t.http}/health/live`)).status).toBe(200);
    } finally {
      await t.close();
    }
  });
});
