import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { MessageBus } from '../../src/bus/message-bus';
import { MemoryBusDriver } from '../../src/bus/drivers/memory-bus.driver';
import { AckRecord, SendDedupe } from '../../src/session/send-dedupe';
import { productionEngine, startTestApp, TestApp } from '../support/test-app';
import { Frame, TestClient } from '../support/ws-client';

/**
 * Per-sender order on every failure path (docs/protocol.md "Acks and retries"): when a send is answered
 * `unavailable` (directory, dedupe store or bus), the sends of that connection already received are
 * refused too, so the client's in-order retries land in the original order.
 */
const WAIT = productionEngine ? 20_000 : 5_000;
jest.setTimeout(productionEngine ? 120_000 : 60_000);

/** The upstream conversation service of DIRECTORY=http, with a fault switch. */
class Upstream {
  readonly members = new Map<string, string[]>();
  /** The next `failing` members requests are answered 503 after FAIL_AFTER_MS. */
  failing = 0;
  private server: Server | null = null;
  private failingSeen: (() => void)[] = [];
  static readonly FAIL_AFTER_MS = 300;

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  /** Resolves when a request that is going to fail has arrived. */
  failingRequestArrived(): Promise<void> {
    return new Promise((resolve) => this.failingSeen.push(resolve));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const m = /^\/conversations\/([^/]+)\/members$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(req.method === 'HEAD' ? 200 : 404).end();
    if (this.failing > 0) {
      this.failing--;
      for (const resolve of this.failingSeen.splice(0)) resolve();
      setTimeout(() => res.writeHead(503).end(), Upstream.FAIL_AFTER_MS);
      return;
    }
    const members = this.members.get(decodeURIComponent(m[1]));
    if (!members) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ members }));
  }
}

const answerTo = (ref: string) => (f: Frame) =>
  (f.type === 'ack' && f.payload?.ref === ref) || (f.type === 'error' && f.msg_id === ref);

describe(`per-sender order after a dependency failure (${productionEngine ? 'production' : 'embedded'} engine)`, () => {
  const upstream = new Upstream();
  let t: TestApp;
  const clients: TestClient[] = [];
  let run = 0;

  beforeAll(async () => {
    const url = await upstream.start();
    t = await startTestApp({
      DIRECTORY: 'http',
      CONVERSATION_SERVICE_URL: url,
      DIRECTORY_CACHE_TTL_MS: '0',
    });
  });
  afterEach(() => {
    upstream.failing = 0;
    for (const c of clients.splice(0)) c.terminate();
  });
  afterAll(async () => {
    await t.close();
    await upstream.stop();
  });

  /** Two members of a fresh conversation, connected. */
  async function pair() {
    run++;
    const room = `room${run}`;
    const [alice, bob] = [`alice${run}`, `bob${run}`];
    upstream.members.set(room, [alice, bob]);
    const a = (await TestClient.connect(`${t.ws}?user_id=${alice}`)).client;
    const b = (await TestClient.connect(`${t.ws}?user_id=${bob}`)).client;
    clients.push(a, b);
    const send = (ref: string) =>
      a.send({ type: 'send', msg_id: ref, payload: { conversation_id: room, body: ref } });
    return { room, a, b, send };
  }

  /** A then B back to back: both refused; retried in order: both acked, delivered A then B. */
  async function expectOrderedRecovery(
    a: TestClient,
    b: TestClient,
    send: (ref: string) => void,
    {
      between = async () => undefined,
      repair = () => undefined,
    }: { between?: () => Promise<void>; repair?: () => void } = {},
  ) {
    send('A');
    await between();
    send('B');
    expect(await a.next(answerTo('A'), WAIT)).toMatchObject({
      type: 'error',
      payload: { code: 'unavailable' },
    });
    expect(await a.next(answerTo('B'), WAIT)).toMatchObject({
      type: 'error',
      payload: { code: 'unavailable' },
    });
    expect(a.pending('ack')).toEqual([]);
    repair();
    send('A');
    send('B');
    const ackA = await a.next(answerTo('A'), WAIT);
    const ackB = await a.next(answerTo('B'), WAIT);
    expect([ackA.type, ackB.type]).toEqual(['ack', 'ack']);
    expect(a.frames.filter((f) => f.type === 'ack').map((f) => f.payload?.ref)).toEqual(['A', 'B']);
    const delivered = await b.messages(2, WAIT);
    expect(delivered.map((m) => m.payload?.body)).toEqual(['A', 'B']);
    expect(delivered.map((m) => m.payload?.id)).toEqual([ackA.msg_id, ackB.msg_id]);
  }

  it('directory: the first members request fails after 300 ms; B, received meanwhile, is refused too', async () => {
    const { a, b, send } = await pair();
    upstream.failing = 1;
    const arrived = upstream.failingRequestArrived();
    // B is sent once A's membership request is upstream, so B's own check is a second request that
    // succeeds (the case); sent in the same tick, both would share the failing request.
    await expectOrderedRecovery(a, b, send, { between: () => arrived });
  });

  it('directory: A and B share the failing request', async () => {
    const { a, b, send } = await pair();
    upstream.failing = 1;
    await expectOrderedRecovery(a, b, send);
  });

  it('dedupe store: the first reservation fails once B is in; B is refused too', async () => {
    const { a, b, send } = await pair();
    const dedupe = t.app.get(SendDedupe);
    const reserve = dedupe.reserve.bind(dedupe);
    let calls = 0;
    let secondCall!: () => void;
    const secondArrived = new Promise<void>((r) => (secondCall = r));
    dedupe.reserve = async (userId: string, ref: string, candidate: AckRecord) => {
      const n = ++calls;
      if (n === 2) secondCall();
      if (n === 1) {
        await secondArrived; // B has been received and checked: the failure is detected after it
        throw new Error('dedupe store timeout');
      }
      return reserve(userId, ref, candidate);
    };
    try {
      await expectOrderedRecovery(a, b, send);
    } finally {
      dedupe.reserve = reserve;
    }
  });

  // The in-memory bus has a fault switch; on Kafka the driver's own ordering covers publish failures
  // (engines suite), and the directory and dedupe cases above run on both engines.
  if (!productionEngine) {
    it('bus: publishes fail while the bus is down; retried in order once it is back', async () => {
      const { a, b, send } = await pair();
      const bus = t.app.get(MessageBus) as MemoryBusDriver;
      bus.setAvailable(false);
      try {
        await expectOrderedRecovery(a, b, send, { repair: () => bus.setAvailable(true) });
      } finally {
        bus.setAvailable(true);
      }
    });
  }

  it('sends received after the failure was answered are processed normally', async () => {
    const { a, b, send } = await pair();
    upstream.failing = 1;
    send('A');
    expect(await a.next(answerTo('A'), WAIT)).toMatchObject({
      type: 'error',
      payload: { code: 'unavailable' },
    });
    send('C'); // received after the failure: no reason to refuse it
    expect((await a.next(answerTo('C'), WAIT)).type).toBe('ack');
    expect((await b.messages(1, WAIT))[0].payload?.body).toBe('C');
  });
});
