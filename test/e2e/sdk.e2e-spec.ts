/**
 * The client SDK (packages/client) against the real server, over real sockets, with the network path
 * of every client running through a TcpProxy the test can cut or make refuse connections.
 *
 * The property under test (issue wording): a client whose connection is cut keeps sending and
 * receiving; afterwards every message sent by anyone was received exactly once and in order by every
 * member, and every send() resolved once with its ack.
 *
 * The same file runs on the embedded engine (project e2e) and on Kafka/Redis/MariaDB (project
 * e2e-production): startTestApp() picks the engine from RELAY_TEST_ENGINE.
 *
 * The SDK is imported from its source (jest maps `@relay/client` there too); importing the package
 * name would make tsc type-check against packages/client/dist, which is a build output.
 */
import WebSocket from 'ws';
import { connect, memoryStorage } from '../../packages/client/src/index';
import type {
  Ack,
  ConnectOptions,
  ConnectionState,
  DisconnectEvent,
  Message,
  RelayClient,
  RelayError,
  ResetEvent,
} from '../../packages/client/src/index';
import { MessageBus } from '../../src/bus/message-bus';
import { IngressService } from '../../src/gateway/ingress.service';
import type { IngressMessage } from '../../src/protocol/envelope';
import { TcpProxy } from '../support/tcp-proxy';
import { productionEngine, putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';

/** Deadline for one awaited event; Kafka adds latency (and a first publish to a fresh topic is slow). */
const LONG = productionEngine ? 40_000 : 15_000;
const TEST_TIMEOUT = productionEngine ? 120_000 : 60_000;

/** One SDK client and everything it reported. */
interface Peer {
  user: string;
  client: RelayClient;
  proxy: TcpProxy;
  messages: Message[];
  acks: Ack[];
  states: ConnectionState[];
  resets: ResetEvent[];
  errors: RelayError[];
  disconnects: DisconnectEvent[];
  /** Called after every message and every resolved send (cut triggers hook in here). */
  progress: (() => void)[];
}

/** How one send() promise settled; counted, so "exactly once" is checked rather than assumed. */
interface Outcome {
  tag: string;
  resolved: number;
  rejected: number;
  ack?: Ack;
  error?: unknown;
}

type Body = { tag: string; from: string; i: number };

describe(`SDK end to end through a cuttable network (${productionEngine ? 'production' : 'embedded'} engine)`, () => {
  let t: TestApp;
  let appPort = 0;
  const peers: Peer[] = [];
  const proxies: TcpProxy[] = [];
  const raws: TestClient[] = [];
  let run = 0;
  const unique = (name: string) => `${name}-${run}-${Date.now().toString(36)}`;

  beforeAll(async () => {
    // Bursts of 60 sends per client, plus re-sends after every cut, exceed the default 50/s.
    t = await startTestApp({ SEND_RATE_PER_SEC: '1000', SEND_BURST: '1000' });
    appPort = Number(new URL(t.http).port);
  }, 120_000);

  beforeEach(() => {
    run++;
  });

  afterEach(async () => {
    jest.restoreAllMocks();
    await Promise.all(peers.splice(0).map((p) => p.client.close()));
    for (const r of raws.splice(0)) r.terminate();
    await Promise.all(proxies.splice(0).map((p) => p.stop()));
  });

  afterAll(async () => {
    await t?.close();
  });

  async function newProxy(): Promise<TcpProxy> {
    const proxy = new TcpProxy(appPort);
    await proxy.start();
    proxies.push(proxy);
    return proxy;
  }

  async function peer(user: string, options: Partial<ConnectOptions> = {}): Promise<Peer> {
    const proxy = await newProxy();
    const client = connect({
      url: `ws://127.0.0.1:${proxy.port}/ws`,
      userId: user,
      WebSocket,
      backoffBaseMs: 20,
      backoffCapMs: 200,
      sendTimeoutMs: LONG,
      ...options,
    });
    const p: Peer = {
      user,
      client,
      proxy,
      messages: [],
      acks: [],
      states: [],
      resets: [],
      errors: [],
      disconnects: [],
      progress: [],
    };
    client.on('message', (m) => {
      p.messages.push(m);
      for (const f of p.progress) f();
    });
    client.on('state', (s) => p.states.push(s));
    client.on('reset', (r) => p.resets.push(r));
    client.on('error', (e) => p.errors.push(e));
    client.on('disconnect', (d) => p.disconnects.push(d));
    peers.push(p);
    return p;
  }

  /** Sends and records how the promise settles (never left unhandled, even if a test fails first). */
  function send(p: Peer, conversationId: string, body: Body): { outcome: Outcome; settled: Promise<void> } {
    const outcome: Outcome = { tag: body.tag, resolved: 0, rejected: 0 };
    const settled = p.client.send(conversationId, body).then(
      (ack) => {
        outcome.resolved++;
        outcome.ack = ack;
        p.acks.push(ack);
        for (const f of p.progress) f();
      },
      (err: unknown) => {
        outcome.rejected++;
        outcome.error = err;
      },
    );
    return { outcome, settled };
  }

  /** Waits for one send and fails right away, with its error, if it did not resolve with an ack. */
  async function acked(s: { outcome: Outcome; settled: Promise<void> }): Promise<Ack> {
    await s.settled;
    const { tag, resolved, rejected, error } = s.outcome;
    if (resolved !== 1 || rejected !== 0) {
      throw new Error(`send ${tag} resolved ${resolved}x, rejected ${rejected}x: ${String(error)}`);
    }
    return s.outcome.ack!;
  }

  /**
   * `count` sends from `p`, at most `window` awaiting an ack at any time. Stops issuing new ones after
   * the first rejection (e.g. an ack timeout), so a broken path fails the test with that error quickly.
   */
  async function sendStream(
    p: Peer,
    conversationId: string,
    count: number,
    window: number,
  ): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    let next = 0;
    const worker = async () => {
      while (next < count && outcomes.every((o) => o.rejected === 0)) {
        const i = next++;
        const s = send(p, conversationId, { tag: `${p.user}#${i}`, from: p.user, i });
        outcomes[i] = s.outcome;
        await s.settled;
      }
    };
    await Promise.all(Array.from({ length: window }, worker));
    return outcomes;
  }

  /**
   * Cuts `p`'s network path the first time `cond` holds, checked after each of p's messages and acks
   * while its connection is up (a frame still buffered from an already cut connection does not count).
   */
  function cutWhen(p: Peer, label: string, cond: () => boolean): { label: string; cut: number | undefined } {
    const trigger = { label, cut: undefined as number | undefined };
    p.progress.push(() => {
      if (trigger.cut === undefined && p.proxy.open > 0 && cond()) trigger.cut = p.proxy.cut();
    });
    return trigger;
  }

  /**
   * Calls `observe` with every send frame the server reads, before the server handles it (an
   * in-process hook on the ingress; restored after each test). Returns how often each tag was read.
   */
  function watchServerSends(observe: (tag: string) => void = () => undefined): Map<string, number> {
    const seen = new Map<string, number>();
    const ingress = t.app.get(IngressService);
    const handleSend = ingress.handleSend.bind(ingress);
    jest.spyOn(ingress, 'handleSend').mockImplementation((conn, frame) => {
      const tag = (frame.payload.body as Body | undefined)?.tag ?? '';
      seen.set(tag, (seen.get(tag) ?? 0) + 1);
      observe(tag);
      handleSend(conn, frame);
    });
    return seen;
  }

  /** Everything the server retains for `user`, in cursor order, read by a raw fresh device (no SDK involved). */
  async function serverLog(user: string, count: number): Promise<{ cursor: string; id: string }[]> {
    const { client } = await TestClient.connect(`${t.ws}?user_id=${user}`);
    raws.push(client);
    const frames = await client.messages(count, LONG);
    return frames.map((f) => ({ cursor: f.msg_id!, id: f.payload!.id! }));
  }

  const ids = (p: Peer) => p.messages.map((m) => m.id);
  const tagOf = (m: Message) => (m.body as Body).tag;

  function expectAllAckedOnce(
    outcomes: Outcome[],
    conversationId: string,
    expected = outcomes.length,
  ): Ack[] {
    const failed = outcomes.filter((o) => o.resolved !== 1 || o.rejected !== 0);
    expect(failed).toEqual([]);
    expect(outcomes).toHaveLength(expected);
    const acks = outcomes.map((o) => o.ack!);
    for (const a of acks) expect(a.conversationId).toBe(conversationId);
    expect(new Set(acks.map((a) => a.id)).size).toBe(acks.length);
    expect(new Set(acks.map((a) => a.ref)).size).toBe(acks.length);
    return acks;
  }

  /** Each acked id delivered to `p` exactly once and nothing else; reported as tags, readable on failure. */
  function expectExactlyOnce(p: Peer, ackedIds: string[]): void {
    const count = new Map<string, number>();
    for (const m of p.messages) count.set(m.id, (count.get(m.id) ?? 0) + 1);
    const tagById = new Map(p.messages.map((m) => [m.id, tagOf(m)]));
    const duplicated = [...count].filter(([, n]) => n > 1).map(([id, n]) => `${tagById.get(id)} x${n}`);
    const missing = ackedIds.filter((id) => !count.has(id));
    const unexpected = [...count.keys()].filter((id) => !ackedIds.includes(id)).map((id) => tagById.get(id));
    expect({ user: p.user, duplicated, missing, unexpected }).toEqual({
      user: p.user,
      duplicated: [],
      missing: [],
      unexpected: [],
    });
    expect(p.messages).toHaveLength(ackedIds.length);
  }

  function expectStrictlyIncreasingCursors(p: Peer): void {
    const cursors = p.messages.map((m) => m.cursor);
    for (let i = 1; i < cursors.length; i++) {
      if (!(cursors[i] > cursors[i - 1])) {
        throw new Error(`${p.user}: cursor ${i} (${cursors[i]}) does not follow ${cursors[i - 1]}`);
      }
    }
  }

  /** `open`, then one reconnecting -> open per cut, and nothing else. */
  function expectReconnects(p: Peer, times: number): void {
    const expected: ConnectionState[] = ['open'];
    for (let i = 0; i < times; i++) expected.push('reconnecting', 'open');
    expect(p.states).toEqual(expected);
  }

  it(
    'three clients chat while their connections are cut six times: every message reaches every member exactly once, in server order, and every send resolves once',
    async () => {
      const conv = unique('conv');
      const users = ['alice', 'bob', 'carol'].map(unique);
      await putConversation(t.http, conv, users);
      const [alice, bob, carol] = await Promise.all(users.map((u) => peer(u)));
      const all = [alice, bob, carol];
      await Promise.all(all.map((p) => p.client.whenOpen()));

      const PER_CLIENT = 60;
      const TOTAL = PER_CLIENT * all.length;
      // Cut points are events, not times: each fires from inside the SDK's own callbacks, so the
      // connection it cuts is the live one and sends are in flight when it goes.
      const cuts = [
        cutWhen(alice, 'alice: 10th ack', () => alice.acks.length >= 10),
        cutWhen(alice, 'alice: 80 messages received', () => alice.messages.length >= 80),
        cutWhen(bob, 'bob: 100 messages received', () => bob.messages.length >= 100),
        cutWhen(alice, 'alice: 45th ack', () => alice.acks.length >= 45),
      ];
      // And cuts the moment the server has read a given send frame: it will store that message, but
      // its ack is lost, so the SDK must retry it with the same ref.
      const serverCuts = [
        {
          label: 'server read alice #30',
          peer: alice,
          tag: `${alice.user}#30`,
          cut: undefined as number | undefined,
        },
        {
          label: 'server read bob #20',
          peer: bob,
          tag: `${bob.user}#20`,
          cut: undefined as number | undefined,
        },
      ];
      const framesRead = watchServerSends((tag) => {
        for (const c of serverCuts) {
          // Read from a path that is already cut (still in the server's buffer)? Then its retry triggers.
          if (c.cut === undefined && c.tag === tag && c.peer.proxy.open > 0) c.cut = c.peer.proxy.cut();
        }
      });

      const outcomes = await Promise.all(all.map((p) => sendStream(p, conv, PER_CLIENT, 4)));
      const acks = outcomes.map((o) => expectAllAckedOnce(o, conv, PER_CLIENT));
      // A marker sent after everything settled: any duplicate or late replay would arrive before it.
      const endAck = await acked(send(carol, conv, { tag: 'end', from: carol.user, i: -1 }));
      const ackedIds = [...acks.flat(), endAck].map((a) => a.id);
      await waitFor(
        () => all.every((p) => p.messages.at(-1)?.body && tagOf(p.messages.at(-1)!) === 'end'),
        LONG,
        'the end marker at every client',
      );

      for (const c of [...cuts, ...serverCuts]) {
        expect({ label: c.label, cut: c.cut }).toEqual({ label: c.label, cut: 1 });
      }
      // The frames cut under the server were read again: the retry the SDK made after reconnecting.
      for (const c of serverCuts) expect(framesRead.get(c.tag)).toBeGreaterThanOrEqual(2);
      expect(new Set(ackedIds).size).toBe(TOTAL + 1);

      const order = carol.messages.map(tagOf);
      for (const p of all) {
        // Exactly once: as many deliveries as acked messages, and the same set.
        expectExactlyOnce(p, ackedIds);
        // Every member sees the same sequence, and each sender's messages in the order it sent them.
        expect(p.messages.map(tagOf)).toEqual(order);
        for (const sender of all) {
          const seq = p.messages.filter((m) => m.from === sender.user && tagOf(m) !== 'end');
          expect(seq.map((m) => (m.body as Body).i)).toEqual([...Array(PER_CLIENT).keys()]);
        }
        expectStrictlyIncreasingCursors(p);
        expect(p.resets).toEqual([]);
        expect(p.errors).toEqual([]);
      }
      // Delivered copies carry what the ack said.
      const byId = new Map(carol.messages.map((m) => [m.id, m]));
      for (const [k, p] of all.entries()) {
        for (const [i, a] of acks[k].entries()) {
          expect(byId.get(a.id)).toMatchObject({ from: p.user, ts: a.ts, conversationId: conv, body: { i } });
        }
      }
      // Server order: what the outbox holds for each user, read without the SDK, is what the SDK
      // delivered, cursor for cursor (so the SDK neither hid a server duplicate nor reordered).
      for (const p of all) {
        const log = await serverLog(p.user, TOTAL + 1);
        expect(log).toEqual(p.messages.map((m) => ({ cursor: m.cursor, id: m.id })));
      }
      // The SDK really did reconnect, once per cut.
      expectReconnects(alice, 4);
      expectReconnects(bob, 2);
      expectReconnects(carol, 0);
      expect([alice.proxy.accepted, bob.proxy.accepted, carol.proxy.accepted]).toEqual([5, 3, 1]);
    },
    TEST_TIMEOUT,
  );

  it(
    'sends issued while the network refuses connections are queued, then flushed after reconnect: each resolves once, receivers see each once, in order',
    async () => {
      const conv = unique('conv');
      const [aliceId, bobId] = ['alice', 'bob'].map(unique);
      await putConversation(t.http, conv, [aliceId, bobId]);
      const alice = await peer(aliceId);
      const bob = await peer(bobId);
      await Promise.all([alice.client.whenOpen(), bob.client.whenOpen()]);
      await acked(send(alice, conv, { tag: 'warm-up', from: aliceId, i: 0 }));

      // Three sends written to the socket, then the path dies before the proxy forwarded them.
      const sends = [1, 2, 3].map((i) => send(alice, conv, { tag: `inflight-${i}`, from: aliceId, i }));
      alice.proxy.refuse(true);
      expect(alice.proxy.cut()).toBe(1);
      const acceptedBefore = alice.proxy.accepted;
      // The client keeps trying and keeps being refused (each attempt is one more disconnect event).
      await waitFor(() => alice.disconnects.length >= 4, LONG, 'alice to be refused three times');
      for (let i = 4; i <= 13; i++) sends.push(send(alice, conv, { tag: `queued-${i}`, from: aliceId, i }));
      // Bob keeps talking meanwhile; alice must get these after she is back.
      const bobSends = [1, 2, 3, 4, 5].map((i) => send(bob, conv, { tag: `bob-${i}`, from: bobId, i }));
      await Promise.all(bobSends.map(acked));
      await waitFor(() => alice.disconnects.length >= 6, LONG, 'alice to be refused twice more');

      expect(alice.client.state).toBe('reconnecting');
      expect(alice.client.pendingSends).toBe(13);
      expect(sends.filter((s) => s.outcome.resolved + s.outcome.rejected > 0)).toEqual([]);
      expect(alice.proxy.accepted).toBe(acceptedBefore);
      expect(bob.messages.filter((m) => tagOf(m).startsWith('queued-'))).toEqual([]);

      alice.proxy.refuse(false);
      await Promise.all(sends.map((s) => s.settled));
      const acks = expectAllAckedOnce(
        sends.map((s) => s.outcome),
        conv,
      );
      expect(alice.client.pendingSends).toBe(0);
      await acked(send(bob, conv, { tag: 'end', from: bobId, i: -1 }));
      await waitFor(
        () => [alice, bob].every((p) => p.messages.length > 0 && tagOf(p.messages.at(-1)!) === 'end'),
        LONG,
        'the end marker at both clients',
      );

      const aliceTags = [
        'warm-up',
        ...[1, 2, 3].map((i) => `inflight-${i}`),
        ...[...Array(10).keys()].map((k) => `queued-${k + 4}`),
      ];
      for (const p of [alice, bob]) {
        // Alice's 14 in her order, bob's 5 in his, each exactly once, then the marker.
        const fromAlice = p.messages.filter((m) => m.from === aliceId);
        expect(fromAlice.map(tagOf)).toEqual(aliceTags);
        expect(fromAlice.slice(1).map((m) => m.id)).toEqual(acks.map((a) => a.id));
        const fromBob = p.messages.filter((m) => m.from === bobId);
        expect(fromBob.map(tagOf)).toEqual(['bob-1', 'bob-2', 'bob-3', 'bob-4', 'bob-5', 'end']);
        expect(p.messages).toHaveLength(aliceTags.length + 6);
        expectStrictlyIncreasingCursors(p);
        expect(p.resets).toEqual([]);
        expect(p.errors).toEqual([]);
      }
      expect(ids(alice)).toEqual(ids(bob));
      const log = await serverLog(bobId, aliceTags.length + 6);
      expect(log).toEqual(bob.messages.map((m) => ({ cursor: m.cursor, id: m.id })));
      expectReconnects(alice, 1);
      expectReconnects(bob, 0);
      expect(alice.proxy.accepted).toBe(acceptedBefore + 1);
    },
    TEST_TIMEOUT,
  );

  it(
    'resumes from a persisted cursor: a new client for the same user and storage gets exactly what it missed, and no reset',
    async () => {
      const conv = unique('conv');
      const [aliceId, bobId] = ['alice', 'bob'].map(unique);
      await putConversation(t.http, conv, [aliceId, bobId]);
      const storage = memoryStorage();
      const first = await peer(aliceId, { storage });
      const bob = await peer(bobId);
      await Promise.all([first.client.whenOpen(), bob.client.whenOpen()]);

      const before = await sendStream(bob, conv, 5, 2);
      expectAllAckedOnce(before, conv, 5);
      await waitFor(() => first.messages.length === 5, LONG, 'alice to get the first 5');
      await first.client.close();
      expect(first.states.at(-1)).toBe('closed');
      expect(await storage.get()).toBe(first.messages[4].cursor);
      expect(first.messages.map(tagOf)).toEqual([0, 1, 2, 3, 4].map((i) => `${bobId}#${i}`));

      // Sent while alice has no client at all.
      const missedAcks: Ack[] = [];
      for (let i = 0; i < 7; i++)
        missedAcks.push(await acked(send(bob, conv, { tag: `missed-${i}`, from: bobId, i })));

      const second = await peer(aliceId, { storage });
      await second.client.whenOpen();
      expect(second.client.session?.recovered).toBe(true);
      const liveAck = await acked(send(bob, conv, { tag: 'live', from: bobId, i: 7 }));
      await waitFor(
        () => second.messages.length > 0 && tagOf(second.messages.at(-1)!) === 'live',
        LONG,
        'the live message at the resumed client',
      );
      // The missed ones, in order, then the live one: no replay of the first 5, none lost.
      expect(second.messages.map((m) => m.id)).toEqual([...missedAcks, liveAck].map((a) => a.id));
      expect(second.messages[0].cursor > first.messages[4].cursor).toBe(true);
      expectStrictlyIncreasingCursors(second);
      expect(second.resets).toEqual([]);
      expect([...first.errors, ...second.errors]).toEqual([]);
      expect(second.states).toEqual(['open']);
      expect(await storage.get()).toBe(second.messages.at(-1)!.cursor);
    },
    TEST_TIMEOUT,
  );

  describe('a cut at the worst moment of a send: the promise resolves once with the ack, the receiver sees the message once', () => {
    const ROUNDS = 3;
    const variants = [
      // The SDK wrote the frame; the proxy has not read it yet, so the server never sees the first attempt.
      ['right after send() returned', 'client'],
      // The server has the frame and will publish it, but its ack can no longer reach the client.
      ['when the server has read the send frame', 'server-read'],
      // The message is durable on the bus; the ack is about to be written to a dead connection.
      ['after the message is durable, before the ack is written', 'durable'],
    ] as const;

    it.each(variants)(
      'cut %s',
      async (_label, when) => {
        const conv = unique('conv');
        const [aliceId, bobId] = ['alice', 'bob'].map(unique);
        await putConversation(t.http, conv, [aliceId, bobId]);
        const alice = await peer(aliceId);
        const bob = await peer(bobId);
        await Promise.all([alice.client.whenOpen(), bob.client.whenOpen()]);

        // Observe (and, per variant, cut at) the server's side of the send, in-process.
        let armed: string | undefined;
        const cutsMade: number[] = [];
        const published = new Map<string, IngressMessage[]>();
        const bus = t.app.get(MessageBus);
        const publish = bus.publish.bind(bus);
        const framesSeen = watchServerSends((tag) => {
          if (when === 'server-read' && armed === tag) {
            armed = undefined;
            cutsMade.push(alice.proxy.cut());
          }
        });
        jest.spyOn(bus, 'publish').mockImplementation(async (m) => {
          await publish(m);
          const tag = (m.body as Body | undefined)?.tag ?? '';
          published.set(tag, [...(published.get(tag) ?? []), m]);
          if (when === 'durable' && armed === tag) {
            armed = undefined;
            cutsMade.push(alice.proxy.cut());
          }
        });

        const outcomes: Outcome[] = [];
        for (let round = 0; round < ROUNDS; round++) {
          const tag = `${when}-${round}`;
          armed = tag;
          const s = send(alice, conv, { tag, from: aliceId, i: round });
          if (when === 'client') {
            armed = undefined;
            cutsMade.push(alice.proxy.cut());
          }
          await acked(s);
          outcomes.push(s.outcome);
          expect(armed).toBeUndefined(); // the cut did happen at the intended point
          // The next round starts on a fresh, open connection.
          await alice.client.whenOpen();
        }
        expect(cutsMade).toEqual(Array(ROUNDS).fill(1));
        const acks = expectAllAckedOnce(outcomes, conv);

        await acked(send(bob, conv, { tag: 'end', from: bobId, i: -1 }));
        await waitFor(
          () => [alice, bob].every((p) => p.messages.length > 0 && tagOf(p.messages.at(-1)!) === 'end'),
          LONG,
          'the end marker at both clients',
        );
        for (const p of [alice, bob]) {
          expect(p.messages.map(tagOf)).toEqual([...outcomes.map((o) => o.tag), 'end']);
          expect(p.messages.slice(0, ROUNDS).map((m) => [m.id, m.ts])).toEqual(acks.map((a) => [a.id, a.ts]));
          expectStrictlyIncreasingCursors(p);
          expect(p.errors).toEqual([]);
          expect(p.resets).toEqual([]);
        }
        // What the server did: each message was retried on the new connection and answered with the
        // original ack (the id published first), and the outbox holds it once.
        for (const [round, o] of outcomes.entries()) {
          const pubs = published.get(o.tag) ?? [];
          expect(pubs.length).toBeGreaterThanOrEqual(1);
          expect(new Set(pubs.map((m) => m.id))).toEqual(new Set([acks[round].id]));
          if (when !== 'client') {
            expect(framesSeen.get(o.tag)).toBeGreaterThanOrEqual(2);
          }
        }
        const log = await serverLog(bobId, ROUNDS + 1);
        expect(log).toEqual(bob.messages.map((m) => ({ cursor: m.cursor, id: m.id })));
        expectReconnects(alice, ROUNDS);
        expectReconnects(bob, 0);
      },
      TEST_TIMEOUT,
    );
  });
});
