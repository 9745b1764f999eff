import { SignJWT } from 'jose';
import { IngressService } from '../../src/gateway/ingress.service';
import { MetricsService } from '../../src/metrics/metrics.service';
import { productionEngine, putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { Frame, TestClient } from '../support/ws-client';

/**
 * A hostile client against one node (both engines): deep nesting, oversized ids, floods of every frame
 * type, a client that never reads. Each case gets the documented error or close, the process survives
 * and a probe client on the same node is still served.
 */
const WAIT = productionEngine ? 20_000 : 5_000;
jest.setTimeout(productionEngine ? 120_000 : 60_000);

// Small budgets keep the suite fast: 30 frames of burst, then 10 over budget in a row close 4029.
const BUDGET = { FRAME_BURST: '30', FRAME_RATE_PER_SEC: '5', FLOOD_CLOSE_AFTER: '10' };

const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
/** A body nested `depth` levels (arrays and objects alternating), a string at the bottom. */
function deepBody(depth: number): unknown {
  let v: unknown = 'bottom';
  for (let d = 1; d <= depth; d++) v = d % 2 ? [v] : { k: v, n: d };
  return v;
}
const sendText = (ref: string, conversation: string, bodyJson: string) =>
  `{"type":"send","msg_id":${JSON.stringify(ref)},"payload":{"conversation_id":${JSON.stringify(conversation)},"body":${bodyJson}}}`;

const isError = (ref: string, code?: string) => (f: Frame) =>
  f.type === 'error' && f.msg_id === ref && (code === undefined || f.payload?.code === code);

async function rssMiB(): Promise<number> {
  return process.memoryUsage().rss / (1 << 20);
}

describe(`hostile clients (${productionEngine ? 'production' : 'embedded'} engine)`, () => {
  let t: TestApp;
  const clients: TestClient[] = [];
  let run = 0;
  const connect = async (user: string) => {
    const c = await TestClient.connect(`${t.ws}?user_id=${user}`);
    clients.push(c.client);
    return c.client;
  };
  /** A fresh client on the same node gets its pong, and its message is acked. */
  const probe = async () => {
    const p = await connect(`probe${++run}`);
    p.send({ type: 'ping' });
    await p.next((f) => f.type === 'pong', WAIT);
    const room = `probe-room${run}`;
    await putConversation(t.http, room, [`probe${run}`]);
    expect((await p.sendMessage(room, 'still here', 'probe-ref', WAIT)).type).toBe('ack');
  };

  beforeAll(async () => {
    t = await startTestApp(BUDGET);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.terminate();
  });
  afterAll(() => t.close());

  it('deep nesting: up to MAX_JSON_DEPTH is acked and delivered intact; deeper is bad_frame before any ack', async () => {
    const alice = await connect('alice');
    const bob = await connect('bob');
    await putConversation(t.http, 'deep', ['alice', 'bob']);
    // MAX_JSON_DEPTH=64: the frame is level 1, payload level 2, so a body may nest 62 levels.
    for (const depth of [10, 40, 62]) {
      const ack = await alice.sendMessage('deep', deepBody(depth), `ok-${depth}`, WAIT);
      expect(ack).toMatchObject({ type: 'ack', payload: { ref: `ok-${depth}` } });
    }
    for (const depth of [63, 1_000, 6_000]) {
      alice.send(sendText(`deep-${depth}`, 'deep', nested(depth)));
      const answer = await alice.next(
        (f) => f.msg_id === `deep-${depth}` || f.payload?.ref === `deep-${depth}`,
        WAIT,
      );
      expect(answer).toMatchObject({
        type: 'error',
        payload: { code: 'bad_frame', message: 'frame nests deeper than 64 levels' },
      });
    }
    // A last message: once it is delivered, everything accepted before it has been too.
    expect((await alice.sendMessage('deep', 'last', 'last', WAIT)).type).toBe('ack');
    const got = await bob.messages(4, WAIT);
    expect(got.map((m) => m.payload?.body)).toEqual([deepBody(10), deepBody(40), deepBody(62), 'last']);
    expect(
      alice.frames.filter((f) => f.type === 'ack' && String(f.payload?.ref).startsWith('deep-')),
    ).toEqual([]);
    await probe();
  });

  it('oversized and malformed ids: errors echo at most 64 characters of the ref; bad conversation ids are bad_frame', async () => {
    const c = await connect('mallory');
    const huge = 'r'.repeat(60_000);
    const first64 = huge.slice(0, 64);
    c.send(sendText(huge, 'room', '1'));
    expect(await c.next(isError(first64, 'bad_frame'), WAIT)).toBeTruthy();
    c.send({ type: 'subscribe', msg_id: huge });
    expect(await c.next(isError(first64, 'unknown_type'), WAIT)).toBeTruthy();
    c.send({ type: 'confirm', msg_id: huge });
    expect(await c.next(isError(first64, 'bad_frame'), WAIT)).toBeTruthy();
    for (const [i, id] of ['a b', 'x'.repeat(129), '../etc', 'caf\u00e9', ''].entries()) {
      c.send(sendText(`cid-${i}`, id, '1'));
      expect(await c.next(isError(`cid-${i}`, 'bad_frame'), WAIT)).toBeTruthy();
    }
    expect(c.frames.every((f) => f.msg_id === undefined || f.msg_id.length <= 64)).toBe(true);
    expect(c.frames.some((f) => f.type === 'ack')).toBe(false);
    await probe();
  });

  const floods: [string, (c: TestClient, i: number) => void][] = [
    ['ping', (c) => c.send({ type: 'ping' })],
    ['bad JSON', (c) => c.send('{not json')],
    ['unknown type', (c, i) => c.send({ type: 'nope', msg_id: `u${i}` })],
    [
      'send',
      (c, i) => c.send({ type: 'send', msg_id: `s${i}`, payload: { conversation_id: 'flood', body: i } }),
    ],
    ['confirm', (c) => c.send({ type: 'confirm', msg_id: 'x-000000000001' })],
    ['binary', (c) => c.ws.send(Buffer.from([1, 2, 3]))],
  ];
  it.each(floods)(
    'a flood of %s frames gets rate_limited, then close 4029; a probe is still served',
    async (_kind, frame) => {
      const user = `flooder${++run}`;
      await putConversation(t.http, 'flood', [user]);
      const c = await connect(user);
      for (let i = 0; i < 200; i++) frame(c, i);
      expect(
        await c.next((f) => f.type === 'error' && f.payload?.code === 'rate_limited', WAIT),
      ).toBeTruthy();
      expect(await c.waitClosed(WAIT)).toBe(4029);
      expect(c.closeReason).toBe('flooding');
      const limited = c.frames.filter((f) => f.payload?.code === 'rate_limited');
      expect(limited.length).toBeGreaterThanOrEqual(10);
      if (_kind === 'send' || _kind === 'unknown type') {
        // A refusal without processing still carries the frame's ref, so a client can match it.
        expect(limited.every((f) => typeof f.msg_id === 'string')).toBe(true);
      }
      await probe();
    },
  );

  it('an unexpected exception while handling a frame closes that connection 1011 and is counted; the node keeps serving', async () => {
    const ingress = t.app.get(IngressService);
    const handleSend = ingress.handleSend.bind(ingress);
    ingress.handleSend = () => {
      throw new Error('bug in the send path');
    };
    try {
      const user = `victim${++run}`;
      const c = await connect(user);
      c.send({ type: 'send', msg_id: 'boom', payload: { conversation_id: 'anything', body: 1 } });
      expect(await c.waitClosed(WAIT)).toBe(1011);
    } finally {
      ingress.handleSend = handleSend;
    }
    const contained = (await t.app.get(MetricsService).contained.get()).values;
    expect(contained.find((v) => v.labels.where === 'frame')?.value).toBe(1);
    await probe();
  });

  it('counts rejected frames and server closes in the metrics', async () => {
    const metrics = t.app.get(MetricsService);
    const value = async (name: 'framesRejected' | 'connectionsClosed', code: string) =>
      (await metrics[name].get()).values.find((v) => v.labels.code === code)?.value ?? 0;
    expect(await value('framesRejected', 'rate_limited')).toBeGreaterThan(0);
    expect(await value('framesRejected', 'bad_frame')).toBeGreaterThan(0);
    expect(await value('connectionsClosed', '4029')).toBeGreaterThanOrEqual(floods.length);
  });
});

describe(`a client that never reads (${productionEngine ? 'production' : 'embedded'} engine)`, () => {
  /**
   * Unknown and bad frames with 60,000-character refs, 3,000 of them (180 MB in), from a client that
   * stopped reading. Before the bounds every answer echoed the whole ref (180 MB queued). Now each
   * echo is at most 64 characters, every write is checked against MAX_BUFFERED_BYTES, and the frame
   * budget closes the connection: the node's RSS grows by less than RSS_BOUND_MIB.
   */
  const FRAMES = 3_000;
  // The jest process holds the server and this client: the bound covers the server's state plus the
  // garbage of ~180 MB of frames passing through both, which V8 collects when it likes.
  const RSS_BOUND_MIB = 200;
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({
      FRAME_BURST: '2000',
      FRAME_RATE_PER_SEC: '1',
      FLOOD_CLOSE_AFTER: '100',
      MAX_BUFFERED_BYTES: '65536',
    });
  });
  afterAll(() => t.close());

  it('is closed with 1013 or 4029 and the node stays within its memory bound', async () => {
    const { client: c } = await TestClient.connect(`${t.ws}?user_id=reader-not`);
    const { client: probe } = await TestClient.connect(`${t.ws}?user_id=prober`);
    try {
      const ref = 'h'.repeat(60_000);
      const unknown = Buffer.from(JSON.stringify({ type: 'x', msg_id: ref }));
      const bad = Buffer.from(JSON.stringify({ type: 'send', msg_id: ref, payload: {} }));
      c.ws.pause();
      global.gc?.();
      const before = await rssMiB();
      let peak = before;
      for (let i = 0; i < FRAMES; i++) {
        c.ws.send(i % 2 ? unknown : bad, { binary: false });
        if (c.ws.bufferedAmount > 4 << 20) {
          await waitFor(() => c.ws.bufferedAmount < 1 << 20, 30_000, 'the test client to flush', 1);
          peak = Math.max(peak, await rssMiB());
        }
      }
      await waitFor(() => c.ws.bufferedAmount === 0, 30_000, 'the test client to flush', 5);
      peak = Math.max(peak, await rssMiB());
      const metrics = t.app.get(MetricsService);
      await waitFor(
        async () =>
          (await metrics.connectionsClosed.get()).values.some((v) =>
            ['1013', '4029'].includes(String(v.labels.code)),
          ),
        WAIT,
        'the server to close the client that does not read',
      );
      peak = Math.max(peak, await rssMiB());
      console.log(`RSS ${before.toFixed(0)} MiB -> peak ${peak.toFixed(0)} MiB over ${FRAMES} frames`);
      expect(peak - before).toBeLessThan(RSS_BOUND_MIB);
      // Meanwhile another client is served.
      probe.send({ type: 'ping' });
      await probe.next((f) => f.type === 'pong', WAIT);
      // The client reads again: the echoes it got are short, and then the close.
      c.ws.resume();
      expect([1013, 4029]).toContain(await c.waitClosed(WAIT));
      expect(c.frames.length).toBeGreaterThan(0);
      expect(
        c.frames.every((f) => f.type === 'welcome' || (f.type === 'error' && (f.msg_id ?? '').length <= 64)),
      ).toBe(true);
    } finally {
      c.terminate();
      probe.terminate();
    }
  });
});

describe('token expiry on an open connection', () => {
  const SECRET = 'test-secret-that-is-long-enough-for-hs256';
  let t: TestApp;
  beforeAll(async () => {
    // A heartbeat far away: only the connection's own timer can close it in time.
    t = await startTestApp({
      AUTH_MODE: 'jwt',
      JWT_SECRET: SECRET,
      ADMIN_API_KEY: 'admin-key-for-tests',
      HEARTBEAT_MS: '600000',
    });
  });
  afterAll(() => t.close());

  it('closes 4001 at exp, without waiting for a heartbeat', async () => {
    // 3 to 4 s from now: room for connect + ping under a loaded CI machine before it expires.
    const exp = Math.floor(Date.now() / 1000) + 4;
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('jane')
      .setIssuedAt()
      .setExpirationTime(exp)
      .sign(new TextEncoder().encode(SECRET));
    const { client } = await TestClient.connect(`${t.ws}?token=${token}`);
    try {
      client.send({ type: 'ping' });
      await client.next((f) => f.type === 'pong');
      expect(await client.waitClosed(5_000)).toBe(4001);
      const closedAt = Date.now();
      expect(client.closeReason).toBe('token expired');
      expect(closedAt).toBeGreaterThanOrEqual(exp * 1000 - 50);
      expect(closedAt).toBeLessThan(exp * 1000 + 2_000);
    } finally {
      client.terminate();
    }
  });
});
