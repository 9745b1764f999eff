import { MessageBus } from '../../src/bus/message-bus';
import { IngressMessage } from '../../src/protocol/envelope';
import { signHs256 } from '../support/jwt';
import { productionEngine, putConversation, startTestApp, TestApp } from '../support/test-app';
import { Frame, TestClient } from '../support/ws-client';

/**
 * Protocol v1.1 durable features (issue 11 items 1 and 4): per-conversation `payload.seq` and
 * delivered/read receipts, through real WebSocket clients, on both engines (e2e and e2e-production).
 */
const WAIT = productionEngine ? 20_000 : 5_000;
jest.setTimeout(productionEngine ? 120_000 : 30_000);

const isReceipt = (f: Frame) => f.type === 'receipt';
const seqOf = (f: Frame) => f.payload?.seq as number;

describe('v1.1 conversation seq and receipts', () => {
  let t: TestApp;
  const clients: TestClient[] = [];
  let run = 0;
  let n = 0;
  const ref = () => `r${++n}`;
  const user = (name: string) => `${name}${run}`;
  const connect = async (userId: string, last?: string) => {
    const c = await TestClient.connect(`${t.ws}?user_id=${userId}`, last);
    clients.push(c.client);
    return c.client;
  };
  const send = async (c: TestClient, conversation: string, text: string) => {
    const ack = await c.sendMessage(conversation, { text }, ref(), WAIT);
    expect(ack.type).toBe('ack');
    return ack.msg_id!;
  };
  const receipts = async (conversation: string) => {
    const res = await fetch(`${t.http}/v1/conversations/${conversation}/receipts`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    t = await startTestApp({
      SEND_RATE_PER_SEC: '1000',
      SEND_BURST: '1000',
      RECEIPTS_FANOUT_MAX_MEMBERS: '4',
      RECEIPTS_RATE_PER_SEC: '100',
    });
  });
  beforeEach(() => {
    run++;
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.terminate();
  });
  afterAll(() => t?.close());

  it('numbers messages per conversation, gapless in ack order, the same for every member and on replay', async () => {
    const [alice, bob, c1, c2] = [user('alice'), user('bob'), user('c1-'), user('c2-')];
    await putConversation(t.http, c1, [alice, bob]);
    await putConversation(t.http, c2, [alice, bob]);
    const a = await connect(alice);
    const b = await connect(bob);
    // Interleaved senders and conversations: each conversation counts on its own.
    await send(a, c1, 'a1');
    await send(b, c1, 'b1');
    await send(a, c2, 'x1');
    await send(b, c1, 'b2');
    await send(a, c2, 'x2');
    const atBob = await b.messages(5, WAIT);
    const view = (frames: Frame[]) =>
      frames.map((f) => [f.payload?.conversation_id, (f.payload?.body as { text: string }).text, seqOf(f)]);
    expect(view(atBob)).toEqual([
      [c1, 'a1', 1],
      [c1, 'b1', 2],
      [c2, 'x1', 1],
      [c1, 'b2', 3],
      [c2, 'x2', 2],
    ]);
    expect(view(await a.messages(5, WAIT))).toEqual(view(atBob));
    // A fresh device of bob replays them with the same numbers.
    const again = await connect(bob);
    expect(view(await again.messages(5, WAIT))).toEqual(view(atBob));
  });

  it('keeps a message its seq when the bus delivers it again, and stores it once', async () => {
    const [alice, bob, c] = [user('alice'), user('bob'), user('c')];
    await putConversation(t.http, c, [alice, bob]);
    const a = await connect(alice);
    const published: IngressMessage[] = [];
    const bus = t.app.get(MessageBus);
    const publish = bus.publish.bind(bus);
    const spy = jest.spyOn(bus, 'publish').mockImplementation((m: IngressMessage) => {
      published.push(m);
      return publish(m);
    });
    try {
      await send(a, c, 'one');
      await send(a, c, 'two');
    } finally {
      spy.mockRestore();
    }
    const first = await a.messages(2, WAIT);
    // A redelivery (Kafka after a router crash, or a duplicate record): the same records again, then a new message.
    for (const m of published) await bus.publish(m);
    await send(a, c, 'three');
    const [third] = await a.messages(1, WAIT);
    expect(seqOf(third)).toBe(3);
    expect(a.pending('message')).toEqual([]); // the duplicates were not delivered again
    const replay = await (await connect(alice)).messages(3, WAIT);
    expect(replay.map(seqOf)).toEqual([1, 2, 3]);
    expect(replay.map((f) => f.msg_id)).toEqual([...first, third].map((f) => f.msg_id));
  });

  it('sends a read receipt to the other members and to the reader’s other devices, and lists the markers', async () => {
    const [alice, bob, carol, c] = [user('alice'), user('bob'), user('carol'), user('c')];
    await putConversation(t.http, c, [alice, bob, carol]);
    const a = await connect(alice);
    const b = await connect(bob);
    const b2 = await connect(bob);
    const k = await connect(carol);
    await send(a, c, 'm1');
    await send(a, c, 'm2');
    await b.messages(2, WAIT);
    b.send({ type: 'read', payload: { conversation_id: c, seq: 2 } });
    for (const client of [a, k, b2, b]) {
      const r = await client.next(isReceipt, WAIT);
      expect(r.msg_id).toEqual(expect.any(String));
      expect(r.payload).toEqual({
        conversation_id: c,
        user_id: bob,
        kind: 'read',
        seq: 2,
        ts: expect.any(Number),
      });
    }
    // The receipt has a cursor after the messages, like a message.
    const aliceFrames = a.frames.filter((f) => f.type === 'message' || f.type === 'receipt');
    expect(aliceFrames.map((f) => f.type)).toEqual(['message', 'message', 'receipt']);
    expect(aliceFrames[2].msg_id! > aliceFrames[1].msg_id!).toBe(true);
    const listed = await receipts(c);
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual({
      conversation_id: c,
      head: 2,
      receipts: [{ user_id: bob, delivered: 2, read: 2 }],
    });
  });

  it('gives a member who was offline the others’ read receipts on resume, after the messages they cover', async () => {
    const [alice, bob, c] = [user('alice'), user('bob'), user('c')];
    await putConversation(t.http, c, [alice, bob]);
    const a = await connect(alice);
    await send(a, c, 'hello');
    const [own] = await a.messages(1, WAIT);
    a.terminate(); // alice goes offline with her cursor
    const b = await connect(bob);
    await b.messages(1, WAIT);
    await send(b, c, 'reply');
    await b.messages(1, WAIT);
    b.send({ type: 'read', payload: { conversation_id: c, seq: 2 } });
    await b.next(isReceipt, WAIT); // bob's own device sees it: it is stored
    const back = await connect(alice, own.msg_id);
    const [reply] = await back.messages(1, WAIT);
    const receipt = await back.next(isReceipt, WAIT);
    expect(seqOf(reply)).toBe(2);
    expect(receipt.payload).toMatchObject({ user_id: bob, kind: 'read', seq: 2 });
    expect(back.frames.filter((f) => f.type !== 'welcome').map((f) => f.type)).toEqual([
      'message',
      'receipt',
    ]);
  });

  it('never moves a marker backwards, and clamps a read beyond the newest message', async () => {
    const [alice, bob, c] = [user('alice'), user('bob'), user('c')];
    await putConversation(t.http, c, [alice, bob]);
    const a = await connect(alice);
    const b = await connect(bob);
    for (const text of ['1', '2', '3']) await send(a, c, text);
    await b.messages(3, WAIT);
    b.send({ type: 'read', payload: { conversation_id: c, seq: 3 } });
    expect((await a.next(isReceipt, WAIT)).payload).toMatchObject({ kind: 'read', seq: 3 });
    b.send({ type: 'read', payload: { conversation_id: c, seq: 1 } }); // backwards: ignored
    b.send({ type: 'read', payload: { conversation_id: c, seq: 3 } }); // not forward: ignored
    b.send({ type: 'read', payload: { conversation_id: c, seq: 1_000 } }); // beyond the head: clamped to 3
    await send(a, c, '4');
    b.send({ type: 'read', payload: { conversation_id: c, seq: 4 } });
    const next = await a.next(isReceipt, WAIT);
    expect(next.payload).toMatchObject({ kind: 'read', seq: 4 });
    expect(a.frames.filter(isReceipt).map(seqOf)).toEqual([3, 4]);
    const listed = await receipts(c);
    expect(listed.body.receipts).toEqual([{ user_id: bob, delivered: 4, read: 4 }]);
  });

  it('derives delivered receipts from confirm, for the messages of others it covers', async () => {
    const [alice, bob, c] = [user('alice'), user('bob'), user('c')];
    await putConversation(t.http, c, [alice, bob]);
    const a = await connect(alice);
    const b = await connect(bob);
    await send(a, c, 'm1');
    await send(a, c, 'm2');
    const got = await b.messages(2, WAIT);
    b.send({ type: 'confirm', msg_id: got[0].msg_id });
    expect((await a.next(isReceipt, WAIT)).payload).toMatchObject({
      user_id: bob,
      kind: 'delivered',
      seq: 1,
    });
    b.send({ type: 'confirm', msg_id: got[1].msg_id });
    expect((await a.next(isReceipt, WAIT)).payload).toMatchObject({
      user_id: bob,
      kind: 'delivered',
      seq: 2,
    });
    // Alice confirming her own messages produces no marker for her.
    const own = await a.messages(2, WAIT);
    a.send({ type: 'confirm', msg_id: own[1].msg_id });
    await send(b, c, 'ping');
    await a.messages(1, WAIT);
    expect(b.frames.filter((f) => isReceipt(f) && f.payload?.user_id === alice)).toEqual([]);
    expect((await receipts(c)).body.receipts).toEqual([{ user_id: bob, delivered: 2, read: 0 }]);
  });

  it('in a conversation above RECEIPTS_FANOUT_MAX_MEMBERS sends a receipt only to the senders it covers', async () => {
    const names = ['alice', 'bob', 'carol', 'dave', 'erin'].map(user);
    const dave = names[3];
    const c = user('big');
    await putConversation(t.http, c, names); // 5 members > 4
    const [a, b, k, d, e] = await Promise.all(names.map((u) => connect(u)));
    await send(a, c, 'from alice');
    await send(b, c, 'from bob');
    await send(a, c, 'from alice again');
    await d.messages(3, WAIT);
    d.send({ type: 'read', payload: { conversation_id: c, seq: 2 } }); // covers alice's 1 and bob's 2
    for (const client of [a, b]) {
      expect((await client.next(isReceipt, WAIT)).payload).toMatchObject({
        user_id: dave,
        kind: 'read',
        seq: 2,
      });
    }
    d.send({ type: 'read', payload: { conversation_id: c, seq: 3 } }); // covers only alice's 3
    expect((await a.next(isReceipt, WAIT)).payload).toMatchObject({ user_id: dave, seq: 3 });
    // A marker message after the receipts: whoever did not get a receipt by then gets none.
    await send(e, c, 'marker');
    for (const client of [a, b, k, d, e]) {
      await client.next(
        (f) => f.type === 'message' && (f.payload?.body as { text: string }).text === 'marker',
        WAIT,
      );
    }
    expect(b.frames.filter(isReceipt).map(seqOf)).toEqual([2]);
    expect(k.frames.filter(isReceipt)).toEqual([]);
    expect(e.frames.filter(isReceipt)).toEqual([]);
    expect(d.frames.filter(isReceipt)).toEqual([]); // the reader is not a sender of what it covers
    // Everyone can still read the markers over HTTP.
    expect((await receipts(c)).body.receipts).toEqual([{ user_id: dave, delivered: 3, read: 3 }]);
  });

  it('refuses read for non-members (forbidden), unknown conversations (not_found) and bad seqs (bad_frame)', async () => {
    const [alice, bob, c] = [user('alice'), user('bob'), user('c')];
    await putConversation(t.http, c, [alice]);
    const b = await connect(bob);
    b.send({ type: 'read', payload: { conversation_id: c, seq: 1 } });
    expect((await b.next((f) => f.type === 'error', WAIT)).payload?.code).toBe('forbidden');
    b.send({ type: 'read', payload: { conversation_id: user('nowhere'), seq: 1 } });
    expect((await b.next((f) => f.type === 'error', WAIT)).payload?.code).toBe('not_found');
    for (const seq of [0, -1, 1.5, '2', null]) {
      b.send({ type: 'read', payload: { conversation_id: c, seq } });
      expect((await b.next((f) => f.type === 'error', WAIT)).payload?.code).toBe('bad_frame');
    }
    // A member added after a refusal is admitted at once (refusals are not cached).
    await putConversation(t.http, c, [alice, bob]);
    const a = await connect(alice);
    await send(a, c, 'welcome bob');
    await b.messages(1, WAIT);
    b.send({ type: 'read', payload: { conversation_id: c, seq: 1 } });
    expect((await a.next(isReceipt, WAIT)).payload).toMatchObject({ user_id: bob, seq: 1 });
    expect((await receipts(user('nowhere'))).status).toBe(404);
    expect((await receipts(user('nowhere'))).body).toMatchObject({ code: 'not_found' });
  });

  it('skips bus records of a kind it does not know without blocking the conversation', async () => {
    const [alice, c] = [user('alice'), user('c')];
    await putConversation(t.http, c, [alice]);
    const a = await connect(alice);
    const bus = t.app.get(MessageBus);
    // A newer writer's record on the same partition as the conversation's messages.
    await bus.publish({ kind: 'future-thing', id: 'x1', conversation_id: c } as unknown as IngressMessage);
    await send(a, c, 'after it');
    const [m] = await a.messages(1, WAIT);
    expect(seqOf(m)).toBe(1);
  });
});

describe('v1.1 receipts API with credentials (jwt auth mode)', () => {
  const SECRET = 'receipts-secret-0123456789abcdef0123456789';
  const KEY = 'receipts-admin-key-0123456789';
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ AUTH_MODE: 'jwt', JWT_SECRET: SECRET, ADMIN_API_KEY: KEY });
  });
  afterAll(() => t?.close());

  it('answers members and the admin key; 401 without credentials, 403 for non-members', async () => {
    const admin = { authorization: `Bearer ${KEY}` };
    await putConversation(t.http, 'jc', ['ann', 'ben'], admin);
    const get = async (headers: Record<string, string>, query = '') => {
      const res = await fetch(`${t.http}/v1/conversations/jc/receipts${query}`, { headers });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect(await get(admin)).toEqual({ status: 200, body: { conversation_id: 'jc', head: 0, receipts: [] } });
    expect((await get({ authorization: `Bearer ${await signHs256(SECRET, 'ann')}` })).status).toBe(200);
    expect((await get({}, `?token=${await signHs256(SECRET, 'ben')}`)).status).toBe(200);
    const outsider = await get({ authorization: `Bearer ${await signHs256(SECRET, 'zed')}` });
    expect(outsider).toMatchObject({ status: 403, body: { code: 'forbidden' } });
    expect(await get({})).toMatchObject({ status: 401, body: { code: 'unauthorized' } });
    expect((await get({ authorization: 'Bearer wrong' })).status).toBe(401);
  });
});
