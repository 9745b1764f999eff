/**
 * The router's quarantine rule end to end (docs/architecture.md): every body the protocol accepts is
 * stored and delivered; a record that cannot be routed goes to the dead-letter topic (Kafka) / store
 * (embedded) and its partition keeps flowing; a dependency outage quarantines nothing and loses nothing.
 *
 * Runs on the embedded engine (project e2e) and on Kafka/Redis/MariaDB (project e2e-production).
 * Records that bypass the gateway are published straight to the bus: through `MessageBus.publish` on
 * the embedded engine, with a plain kafkajs producer on the app's own topic in production.
 */
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, PartitionMetadata, Partitioners, Producer } from 'kafkajs';
import { MemoryBusDriver } from '../../src/bus/drivers/memory-bus.driver';
import { MessageBus, partitionFor } from '../../src/bus/message-bus';
import { newMessageId } from '../../src/common/ids';
import { OutboxStore } from '../../src/outbox/outbox.store';
import { IngressMessage } from '../../src/protocol/envelope';
import { mysqlAdmin } from '../support/backends';
import { TcpProxy } from '../support/tcp-proxy';
import { productionEngine, putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { Frame, TestClient } from '../support/ws-client';

/** Deadline for one awaited event; Kafka adds latency (a consumer joining a fresh topic is slow). */
const LONG = productionEngine ? 40_000 : 10_000;
jest.setTimeout(productionEngine ? 120_000 : 60_000);

/** `[[[ ... 0 ... ]]]`, an array nesting `levels` deep. */
function nested(levels: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

/** The same as JSON text, for values JSON.stringify cannot take. */
const nestedJson = (levels: number) => `${'['.repeat(levels)}0${']'.repeat(levels)}`;

/** A record that never went through the gateway. */
function ingress(conversationId: string, from: string, body: unknown): IngressMessage {
  const ts = Date.now();
  return {
    id: newMessageId(ts),
    conversation_id: conversationId,
    from,
    ts,
    body,
    ref: `bypass-${randomUUID()}`,
  };
}

/** relay_dead_letters_total by reason, from the app's /metrics. */
async function deadLetterCounts(t: TestApp): Promise<Record<string, number>> {
  const text = await (await fetch(`${t.http}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^relay_dead_letters_total\{reason="([^"]+)"\} (\d+)/gm))
    out[m[1]] = Number(m[2]);
  return out;
}

const kafka = new Kafka({
  clientId: 'relay-test-quarantine',
  brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:19092').split(','),
  logLevel: logLevel.NOTHING,
});

/** Records of a topic from the beginning, read by a throwaway consumer until `done` holds (deadline). */
async function readTopic<T>(
  topic: string,
  done: (records: { key: string | null; value: string | null }[]) => T | undefined,
): Promise<T> {
  const consumer = kafka.consumer({ groupId: `relay-test-read-${randomUUID()}` });
  const records: { key: string | null; value: string | null }[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        records.push({ key: message.key?.toString() ?? null, value: message.value?.toString() ?? null });
      },
    });
    return (await waitFor(() => done(records), LONG, `records in ${topic}`)) as T;
  } finally {
    await consumer.disconnect();
  }
}

/** A quarantined record as either engine keeps it: message id (or raw value) and reason. */
interface Quarantined {
  id: string | null;
  raw: string | null;
  reason: string;
  partition: number;
}

async function quarantined(t: TestApp, done: (q: Quarantined[]) => boolean): Promise<Quarantined[]> {
  if (!productionEngine) {
    const bus = t.app.get(MessageBus) as MemoryBusDriver;
    return (await waitFor<Quarantined[] | undefined>(
      () => {
        const q = bus.deadLetters().map((d) => ({
          id: typeof d.message === 'object' && d.message !== null ? d.message.id : null,
          raw: typeof d.message === 'string' ? d.message : null,
          reason: d.reason,
          partition: d.partition,
        }));
        return done(q) ? q : undefined;
      },
      LONG,
      'dead letters',
    )) as Quarantined[];
  }
  return readTopic(t.config.kafka.dlqTopic, (records) => {
    const q = records.map((r) => {
      // Parsed shallowly on purpose: the message inside may nest far too deep for jest to print.
      const v = JSON.parse(r.value ?? 'null') as { reason: string; partition: number; message: unknown };
      const m = v.message;
      return {
        id: typeof m === 'object' && m !== null ? (m as { id: string }).id : null,
        raw: typeof m === 'string' ? m : null,
        reason: v.reason,
        partition: v.partition,
      };
    });
    return done(q) ? q : undefined;
  });
}

/** Kafka's default (murmur2) partitioner or the embedded bus's hash: where a conversation's messages go. */
function partitionOf(t: TestApp, conversationId: string): number {
  const n = t.config.kafka.partitions;
  if (!productionEngine) return partitionFor(conversationId, n);
  const partitionMetadata: PartitionMetadata[] = Array.from({ length: n }, (_, i) => ({
    partitionErrorCode: 0,
    partitionId: i,
    leader: 0,
    replicas: [0],
    isr: [0],
  }));
  return Partitioners.DefaultPartitioner()({
    topic: t.config.kafka.topic,
    partitionMetadata,
    message: { key: conversationId, value: null },
  });
}

/** A conversation id starting with `prefix` whose messages share `other`'s partition. */
function samePartition(t: TestApp, other: string, prefix: string): string {
  const want = partitionOf(t, other);
  for (let i = 0; i < 10_000; i++) {
    const c = `${prefix}-${i}`;
    if (partitionOf(t, c) === want) return c;
  }
  throw new Error(`no conversation id for partition ${want}`);
}

describe(`quarantine (${productionEngine ? 'production' : 'embedded'} engine)`, () => {
  const clients: TestClient[] = [];
  const connect = async (t: TestApp, user: string) => {
    const { client } = await TestClient.connect(`${t.ws}?user_id=${user}`);
    clients.push(client);
    return client;
  };
  let producer: Producer | null = null;
  /** Produces raw records to the app's ingress topic (production only). */
  const produceRaw = async (t: TestApp, messages: { key: string; value: string | null }[]) => {
    if (!producer) {
      producer = kafka.producer({
        createPartitioner: Partitioners.DefaultPartitioner,
        allowAutoTopicCreation: false,
      });
      await producer.connect();
    }
    await producer.send({ topic: t.config.kafka.topic, acks: -1, messages });
  };
  let run = 0;
  const id = (x: string) => `${x}${run}`;
  beforeEach(() => void run++);
  afterEach(() => {
    for (const c of clients.splice(0)) c.terminate();
  });
  afterAll(async () => {
    await producer?.disconnect();
  });

  /** Asserts that nothing went to the dead-letter topic/store and nothing was counted. */
  async function expectNoDeadLetters(t: TestApp): Promise<void> {
    expect(await deadLetterCounts(t)).toEqual({});
    if (!productionEngine) {
      expect((t.app.get(MessageBus) as MemoryBusDriver).deadLetters()).toHaveLength(0);
      return;
    }
    const admin = kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(t.config.kafka.dlqTopic);
      expect(offsets.reduce((n, p) => n + Number(p.high), 0)).toBe(0);
    } finally {
      await admin.disconnect();
    }
  }

  describe('deep bodies and poison records', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startTestApp({ SEND_RATE_PER_SEC: '1000', SEND_BURST: '1000' });
    });
    afterAll(() => t?.close());

    it('acks and delivers a body nested 40 levels and one at the protocol limit (62), intact', async () => {
      const [alice, bob, conv] = [id('alice'), id('bob'), id('deep')];
      await putConversation(t.http, conv, [alice, bob]);
      const a = await connect(t, alice);
      const b = await connect(t, bob);
      // MAX_JSON_DEPTH=64 counts the frame (1) and its payload (2): a send's body may nest 62 levels.
      const depths = [40, t.config.gateway.maxJsonDepth - 2];
      expect(depths[1]).toBe(62);
      const acks: Frame[] = [];
      for (const depth of depths) acks.push(await a.sendMessage(conv, nested(depth), `deep-${depth}`, LONG));
      expect(acks.map((f) => f.type)).toEqual(['ack', 'ack']);
      const got = await b.messages(2, LONG);
      expect(got.map((m) => m.payload?.id)).toEqual(acks.map((f) => f.msg_id));
      expect(got[0].payload?.body).toEqual(nested(40));
      expect(got[1].payload?.body).toEqual(nested(62));
      expect(await deadLetterCounts(t)).toEqual({});
    });

    it('dead-letters a record the router cannot route; a later message on the same partition is delivered', async () => {
      const [alice, bob] = [id('alice'), id('bob')];
      const poisoned = id('poison');
      const next = samePartition(t, poisoned, id('next'));
      await putConversation(t.http, poisoned, [alice, bob]);
      await putConversation(t.http, next, [alice, bob]);
      const a = await connect(t, alice);
      const b = await connect(t, bob);

      // A body nesting 10,000 levels: JSON.stringify overflows the stack on it (issue 7, case 1).
      const poison = ingress(poisoned, alice, null);
      if (productionEngine) {
        const value = JSON.stringify(poison).replace('"body":null', `"body":${nestedJson(10_000)}`);
        await produceRaw(t, [{ key: poisoned, value }]);
      } else {
        await t.app.get(MessageBus).publish({ ...poison, body: nested(10_000) });
      }
      const ack = await a.sendMessage(next, 'after the poison', id('after'), LONG);
      expect(ack.type).toBe('ack');
      const [m] = await b.messages(1, LONG);
      expect(m.payload).toMatchObject({ id: ack.msg_id, conversation_id: next, body: 'after the poison' });

      const q = await quarantined(t, (all) => all.some((d) => d.id === poison.id));
      const dead = q.filter((d) => d.id === poison.id);
      expect(dead).toHaveLength(1);
      expect(dead[0].reason).toMatch(/^unserializable: RangeError/);
      expect(dead[0].partition).toBe(partitionOf(t, poisoned));
      await waitFor(async () => (await deadLetterCounts(t)).unserializable === 1, LONG, 'the counter');
      expect(b.pending('message')).toHaveLength(0); // the poison reached nobody
    });

    if (productionEngine) {
      it('dead-letters a record that is not an IngressMessage JSON; a later message on the same partition is delivered', async () => {
        const [alice, bob] = [id('alice'), id('bob')];
        const conv = id('malformed');
        await putConversation(t.http, conv, [alice, bob]);
        const a = await connect(t, alice);
        const b = await connect(t, bob);
        const raw = `not json {${randomUUID()}`;
        await produceRaw(t, [{ key: conv, value: raw }]);
        const ack = await a.sendMessage(conv, 'after the malformed record', id('after'), LONG);
        const [m] = await b.messages(1, LONG);
        expect(m.payload).toMatchObject({ id: ack.msg_id, body: 'after the malformed record' });
        const q = await quarantined(t, (all) => all.some((d) => d.raw === raw));
        expect(q.filter((d) => d.raw === raw)).toEqual([
          { id: null, raw, reason: 'malformed', partition: partitionOf(t, conv) },
        ]);
        await waitFor(async () => (await deadLetterCounts(t)).malformed === 1, LONG, 'the counter');
      });
    }
  });

  describe('outbox outage', () => {
    let t: TestApp;
    let proxy: TcpProxy | null = null;
    let database = '';
    let directory: Server | null = null;
    const members = new Map<string, string[]>();
    let cut: () => void = () => undefined;
    let restore: () => void = () => undefined;
    /** The router's failed appends, to know it really ran into the outage. */
    let failedAppends = 0;

    /** Counts failed appends; on the embedded engine also plays the outage (`down`). */
    function instrumentOutbox(): void {
      const outbox = t.app.get(OutboxStore);
      const append = outbox.append.bind(outbox);
      const ping = outbox.ping.bind(outbox);
      let down = false;
      jest.spyOn(outbox, 'append').mockImplementation((d) =>
        // An error that names nothing: only the failing ping tells the router it is an outage.
        (down ? Promise.reject(new Error('?')) : append(d)).catch((err: unknown) => {
          failedAppends++;
          throw err;
        }),
      );
      if (productionEngine) return;
      jest
        .spyOn(outbox, 'ping')
        .mockImplementation(() => (down ? Promise.reject(new Error('down')) : ping()));
      cut = () => (down = true);
      restore = () => (down = false);
    }

    beforeAll(async () => {
      if (!productionEngine) {
        t = await startTestApp({ SEND_RATE_PER_SEC: '1000', SEND_BURST: '1000' });
        instrumentOutbox();
        return;
      }
      // Production: MariaDB through a proxy the test cuts. The directory is an upstream HTTP service
      // here, so that membership checks (and so acks) do not need MariaDB while it is gone.
      proxy = new TcpProxy(3306);
      await proxy.start();
      database = `relay_e2e_q_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
      await mysqlAdmin(`CREATE DATABASE \`${database}\``);
      directory = createServer((req, res) => {
        const m = /^\/conversations\/([^/]+)\/members$/.exec(req.url ?? '');
        const list = m ? members.get(decodeURIComponent(m[1])) : undefined;
        if (req.method === 'HEAD' || req.url === '/') return void res.writeHead(200).end();
        if (!list) return void res.writeHead(404).end();
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ members: list }));
      });
      await new Promise<void>((r) => directory!.listen(0, '127.0.0.1', r));
      t = await startTestApp({
        SEND_RATE_PER_SEC: '1000',
        SEND_BURST: '1000',
        MYSQL_URL: `mysql://root@127.0.0.1:${proxy.port}/${database}`,
        DIRECTORY: 'http',
        CONVERSATION_SERVICE_URL: `http://127.0.0.1:${(directory.address() as AddressInfo).port}`,
      });
      const p = proxy;
      cut = () => {
        p.refuse(true);
        p.cut();
      };
      restore = () => p.refuse(false);
      instrumentOutbox();
    });
    afterAll(async () => {
      restore();
      await t?.close();
      await proxy?.stop();
      if (directory) await new Promise((r) => directory!.close(r));
      if (database) await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``);
    });

    it('loses nothing and quarantines nothing: every message acked during the outage is delivered once, in order', async () => {
      const [alice, bob, conv] = [id('alice'), id('bob'), id('outage')];
      members.set(conv, [alice, bob]);
      if (!productionEngine) await putConversation(t.http, conv, [alice, bob]);
      const a = await connect(t, alice);
      const b = await connect(t, bob);
      const first = await a.sendMessage(conv, 'before', id('before'), LONG);
      expect((await b.messages(1, LONG))[0].payload?.id).toBe(first.msg_id);

      failedAppends = 0;
      cut();
      const acked: string[] = [];
      try {
        for (let i = 0; i < 10; i++) {
          const ack = await a.sendMessage(conv, `during ${i}`, id(`during-${i}`), LONG);
          expect(ack.type).toBe('ack'); // the bus is up: acked although nothing can be stored yet
          acked.push(ack.msg_id!);
        }
        await waitFor(() => failedAppends >= 2, LONG, 'the router to retry against the dead outbox');
        expect(b.pending('message')).toHaveLength(0);
      } finally {
        restore();
      }

      const got = await b.messages(10, LONG);
      expect(got.map((m) => m.payload?.id)).toEqual(acked);
      const last = await a.sendMessage(conv, 'after', id('after'), LONG);
      const [next] = await b.messages(1, LONG);
      expect(next.payload?.id).toBe(last.msg_id); // nothing twice in between
      await expectNoDeadLetters(t);
    });
  });
  if (productionEngine) {
    describe('redis outage', () => {
      let t: TestApp;
      let proxy: TcpProxy;
      beforeAll(async () => {
        proxy = new TcpProxy(6379);
        await proxy.start();
        t = await startTestApp({
          SEND_RATE_PER_SEC: '1000',
          SEND_BURST: '1000',
          REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
        });
      });
      afterAll(async () => {
        proxy?.refuse(false);
        await t?.close();
        await proxy?.stop();
      });

      it('loses nothing and quarantines nothing: records routed while pushes fail reach the recipient once', async () => {
        const [alice, bob, conv] = [id('alice'), id('bob'), id('redis')];
        await putConversation(t.http, conv, [alice, bob]);
        const a = await connect(t, alice);
        const b = await connect(t, bob);
        const first = await a.sendMessage(conv, 'before', id('before'), LONG);
        expect((await b.messages(1, LONG))[0].payload?.id).toBe(first.msg_id);

        proxy.refuse(true);
        proxy.cut();
        const routed: string[] = [];
        const sends: { ref: string; acked: string | null }[] = [];
        try {
          // Records already on the bus are routed into the outbox while every push fails.
          for (let i = 0; i < 5; i++) {
            const m = ingress(conv, alice, `routed ${i}`);
            await t.app.get(MessageBus).publish(m);
            routed.push(m.id);
          }
          const outbox = t.app.get(OutboxStore);
          await waitFor(
            async () => {
              const have = new Set((await outbox.readAfter(bob, 0, 100)).map((d) => d.envelope.id));
              return routed.every((x) => have.has(x));
            },
            LONG,
            'the router to store the records while Redis is down',
          );
          // Sends through the gateway need Redis (dedupe): acked or unavailable, never lost.
          for (let i = 0; i < 3; i++) {
            const ref = id(`send-${i}`);
            const f = await a.sendMessage(conv, `sent ${i}`, ref, LONG);
            sends.push({ ref, acked: f.type === 'ack' ? f.msg_id! : null });
          }
        } finally {
          proxy.refuse(false);
        }
        // The client retries what was refused, in order, with the same refs.
        for (let i = 0; i < sends.length; i++) {
          const s = sends[i];
          if (s.acked) continue;
          s.acked = await waitFor(
            async () => {
              const f = await a.sendMessage(conv, `sent ${i}`, s.ref, LONG);
              return f.type === 'ack' ? f.msg_id! : null;
            },
            LONG,
            `retry of ${s.ref}`,
            200,
          );
        }
        const expected = [...routed, ...sends.map((s) => s.acked!)];
        const got = (await b.messages(expected.length, LONG)).map((m) => m.payload?.id);
        expect(new Set(got).size).toBe(got.length);
        expect([...got].sort()).toEqual([...expected].sort());
        expect(got.filter((x) => routed.includes(x!))).toEqual(routed); // each source in its order
        expect(got.filter((x) => !routed.includes(x!))).toEqual(sends.map((s) => s.acked));
        const last = await a.sendMessage(conv, 'after', id('after'), LONG);
        expect((await b.messages(1, LONG))[0].payload?.id).toBe(last.msg_id); // nothing twice
        await expectNoDeadLetters(t);
      });
    });
  }
});
