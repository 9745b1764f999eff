import { randomUUID } from 'node:crypto';
import * as net from 'node:net';
import { Admin, ConfigResourceTypes, ISocketFactory, Kafka, logLevel, Producer } from 'kafkajs';
import { Logger } from '@nestjs/common';
import { KafkaBusConfig, KafkaBusDriver, KafkaBusOptions } from '../../src/bus/drivers/kafka-bus.driver';
import { BusBatch, DeadLetter } from '../../src/bus/message-bus';
import { BusRecord } from '../../src/protocol/bus-record';
import { IngressMessage } from '../../src/protocol/envelope';
import { waitFor } from '../support/wait-for';

/**
 * KafkaBusDriver against the real single-node broker of scripts/infra.sh (started by the engines
 * project's globalSetup; a missing broker fails the run, nothing is skipped). Every test gets its own
 * topic and consumer group.
 */
const BROKER = process.env.KAFKA_BROKERS ?? '127.0.0.1:19092';
const PARTITIONS = 4;

jest.setTimeout(60_000);

let admin: Admin;
let rawKafka: Kafka;
const drivers: KafkaBusDriver[] = [];
const topics: string[] = [];
const servers: net.Server[] = [];
const serverSockets = new Set<net.Socket>();

function freshConfig(overrides: Partial<KafkaBusConfig> = {}): KafkaBusConfig {
  const run = `relay-test-${randomUUID()}`;
  topics.push(overrides.topic ?? run, overrides.dlqTopic ?? `${overrides.topic ?? run}.dlq`);
  return {
    brokers: [BROKER],
    clientId: 'relay-test',
    topic: run,
    groupId: run,
    dlqTopic: `${run}.dlq`,
    partitions: PARTITIONS,
    replicationFactor: 1,
    retentionHours: 24,
    ...overrides,
  };
}

function driver(config: KafkaBusConfig, options: Partial<KafkaBusOptions> = {}): KafkaBusDriver {
  const d = new KafkaBusDriver(config, options);
  drivers.push(d);
  return d;
}

let seq = 0;
function msg(conversation: string, body: unknown = null): IngressMessage {
  seq++;
  return {
    id: `m-${String(seq).padStart(8, '0')}-${randomUUID().slice(0, 8)}`,
    conversation_id: conversation,
    from: 'alice',
    ts: Date.now(),
    body,
    ref: `ref-${seq}`,
  };
}

async function highWatermarkSum(topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, p) => sum + Number(p.high), 0);
}

async function committedSum(groupId: string, topic: string): Promise<number> {
  const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return t.partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
}

/** Reads `n` records of a topic from the beginning (its own consumer group), with a deadline. */
async function readTopic(topic: string, n: number, timeoutMs = 15_000) {
  const consumer = rawKafka.consumer({ groupId: `relay-test-read-${randomUUID()}` });
  const got: { key: string | null; value: string | null; partition: number }[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message, partition }) => {
        got.push({
          key: message.key?.toString('utf8') ?? null,
          value: message.value?.toString('utf8') ?? null,
          partition,
        });
      },
    });
    await waitFor(() => got.length >= n, timeoutMs, `${n} records in ${topic}`);
  } finally {
    await consumer.disconnect();
  }
  return got;
}

/** `[[[ ... ]]]` nesting `levels` deep, as JSON text (JSON.stringify would overflow the stack on the value). */
const deepJson = (levels: number) => `${'['.repeat(levels)}0${']'.repeat(levels)}`;

/** A consumer handler that records every batch it gets. */
function recorder() {
  const batches: BusBatch[] = [];
  const messages: BusRecord[] = [];
  const handler = async (batch: BusBatch) => {
    batches.push(batch);
    messages.push(...batch.messages);
  };
  return { batches, messages, handler };
}

beforeAll(async () => {
  // Keep the kafkajs and driver warnings of the deliberate failure tests out of the output.
  Logger.overrideLogger(['error']);
  rawKafka = new Kafka({ clientId: 'relay-test-inspect', brokers: [BROKER], logLevel: logLevel.NOTHING });
  admin = rawKafka.admin();
  await admin.connect(); // fails loudly when the broker is missing
});

afterAll(async () => {
  await Promise.allSettled(drivers.map((d) => d.close()));
  for (const s of serverSockets) s.destroy();
  for (const s of servers) s.close();
  const existing = new Set(await admin.listTopics());
  const ours = topics.filter((t) => existing.has(t));
  if (ours.length > 0) await admin.deleteTopics({ topics: ours }).catch(() => undefined);
  await admin.disconnect();
});

describe('KafkaBusDriver (real broker)', () => {
  it('creates the topic at init with the configured partitions and >= 24 h retention; concurrent inits tolerate it existing', async () => {
    const config = freshConfig({ retentionHours: 36 });
    // Three nodes starting at once: exactly one creates the topic, the others see TOPIC_ALREADY_EXISTS.
    await Promise.all([driver(config).init(), driver(config).init(), driver(config).init()]);

    const { topics: meta } = await admin.fetchTopicMetadata({ topics: [config.topic] });
    expect(meta[0].partitions).toHaveLength(PARTITIONS);
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: config.topic, configNames: ['retention.ms'] }],
    });
    const retention = described.resources[0].configEntries.find((e) => e.configName === 'retention.ms');
    expect(Number(retention?.configValue)).toBe(36 * 3_600_000);

    // A publish-only (gateway) driver never joins the consumer group.
    await drivers[drivers.length - 1].publish(msg('c-init'));
    const { groups } = await admin.describeGroups([config.groupId]);
    expect(groups[0].members).toHaveLength(0);
  });

  it('publish resolves only once the broker has the message', async () => {
    const config = freshConfig();
    const bus = driver(config);
    await bus.init();
    for (let i = 1; i <= 10; i++) {
      await bus.publish(msg(`c-${i % 3}`));
      // Resolved => written with acks=all: the high watermark already counts it.
      expect(await highWatermarkSum(config.topic)).toBe(i);
    }
  });

  it('keeps per-conversation order and delivers everything, with concurrent publishes across conversations', async () => {
    const config = freshConfig();
    const bus = driver(config);
    await bus.init();
    const N = 2_000;
    const conversations = Array.from({ length: 20 }, (_, i) => `conv-${i}-${randomUUID().slice(0, 6)}`);
    const published: IngressMessage[] = [];
    const pending: Promise<void>[] = [];
    for (let i = 0; i < N; i++) {
      const m = msg(conversations[i % conversations.length], { n: i });
      published.push(m);
      pending.push(bus.publish(m));
      if (i % 250 === 0) await new Promise((r) => setImmediate(r)); // spread over several flushes
    }
    await Promise.all(pending);
    expect(await highWatermarkSum(config.topic)).toBe(N);

    const rec = recorder();
    await bus.consume(rec.handler);
    await waitFor(() => rec.messages.length >= N, 30_000, `${N} messages consumed`);

    expect(new Set(rec.messages.map((m) => m.id)).size).toBe(N);
    for (const c of conversations) {
      const sent = published.filter((m) => m.conversation_id === c).map((m) => m.id);
      const got = rec.messages.filter((m) => m.conversation_id === c).map((m) => m.id);
      expect(got).toEqual(sent);
      // One conversation = one partition.
      const parts = new Set(
        rec.batches.filter((b) => b.messages.some((m) => m.conversation_id === c)).map((b) => b.partition),
      );
      expect(parts.size).toBe(1);
    }
    expect(rec.messages[0]).toEqual(published.find((m) => m.id === rec.messages[0].id)); // every field survives
    await waitFor(
      async () => (await committedSum(config.groupId, config.topic)) === N,
      10_000,
      'all offsets committed',
    );
  });

  it("reports each partition's consumer lag: the backlog when a batch arrives, 0 once it is committed", async () => {
    const config = freshConfig();
    const lags = new Map<number, number[]>();
    const bus = driver(config, {
      onLag: (p, lag) => lags.set(p, [...(lags.get(p) ?? []), lag]),
    });
    await bus.init();
    const N = 60;
    await Promise.all(Array.from({ length: N }, (_, i) => bus.publish(msg(`lag-${i % 6}`))));
    const perPartition = await admin.fetchTopicOffsets(config.topic);
    const busy = perPartition.filter((p) => Number(p.high) > 0).map((p) => p.partition);
    const rec = recorder();
    await bus.consume(rec.handler);
    await waitFor(
      () => busy.every((p) => lags.get(p)?.at(-1) === 0),
      15_000,
      'every partition with records to report lag 0',
    );
    expect(rec.messages).toHaveLength(N);
    for (const p of busy) {
      const high = Number(perPartition.find((o) => o.partition === p)!.high);
      // The first report is the whole backlog of the partition (nothing was committed before).
      expect(lags.get(p)![0]).toBe(high);
    }
  });

  it('batches concurrent publishes into few produce requests', async () => {
    const config = freshConfig();
    const bus = driver(config);
    await bus.init();
    const producer = (bus as unknown as { producer: { current: Producer } }).producer.current;
    const sendBatch = jest.spyOn(producer, 'sendBatch');
    const send = jest.spyOn(producer, 'send');

    await Promise.all(Array.from({ length: 500 }, (_, i) => bus.publish(msg(`c-${i % 17}`))));
    const requests = sendBatch.mock.calls.length + send.mock.calls.length;
    console.log(`500 concurrent publishes -> ${requests} produce request(s)`);
    expect(requests).toBeGreaterThan(0);
    expect(requests).toBeLessThanOrEqual(5);
    expect(await highWatermarkSum(config.topic)).toBe(500);
    sendBatch.mockRestore();
    send.mockRestore();
  });

  it('fails the publishes queued behind a failed produce request instead of letting them overtake it', async () => {
    const config = freshConfig();
    const bus = driver(config);
    await bus.init();
    const producer = (bus as unknown as { producer: { current: Producer } }).producer.current;
    let fail: ((e: Error) => void) | undefined;
    jest
      .spyOn(producer, 'sendBatch')
      .mockImplementationOnce(() => new Promise((_, reject) => (fail = reject)));
    const conversation = `c-order-${randomUUID().slice(0, 6)}`;
    const a = bus.publish(msg(conversation));
    await waitFor(() => fail !== undefined, 5_000, 'first produce request in flight');
    const b = bus.publish(msg(conversation)); // queued behind a's request
    fail!(new Error('simulated broker failure'));
    await expect(a).rejects.toThrow(/simulated broker failure/);
    await expect(b).rejects.toThrow(/earlier publish failed/);
    const c = msg(conversation); // published after the failure was known: goes through (fresh producer)
    await bus.publish(c);
    expect(await highWatermarkSum(config.topic)).toBe(1);
    const rec = recorder();
    await bus.consume(rec.handler);
    await waitFor(() => rec.messages.length >= 1, 10_000, 'c consumed');
    expect(rec.messages.map((m) => m.id)).toEqual([c.id]);
  });

  it('redelivers the same batch when the handler throws, and commits nothing until it succeeds', async () => {
    const config = freshConfig();
    const bus = driver(config, { retryMinMs: 100 });
    await bus.init();
    const conversation = `c-retry-${randomUUID().slice(0, 6)}`;
    const sent = Array.from({ length: 10 }, () => msg(conversation));
    await Promise.all(sent.map((m) => bus.publish(m)));

    const calls: string[][] = [];
    let committedDuringRetry: number | null = null;
    await bus.consume(async (batch) => {
      calls.push(batch.messages.map((m) => m.id));
      if (calls.length === 1) throw new Error('simulated: MySQL is down');
      if (calls.length === 2) committedDuringRetry = await committedSum(config.groupId, config.topic);
    });

    await waitFor(() => calls.length >= 2, 15_000, 'redelivery after a failing handler');
    await waitFor(
      async () => (await committedSum(config.groupId, config.topic)) === 10,
      10_000,
      'commit after success',
    );
    expect(calls[0]).toEqual(sent.map((m) => m.id));
    expect(calls[1]).toEqual(calls[0]);
    expect(committedDuringRetry).toBe(0);
    expect(calls).toHaveLength(2);
  });

  it('keeps retrying a persistently failing batch without skipping or committing, then moves on', async () => {
    const config = freshConfig();
    const bus = driver(config, { retryMinMs: 20, retryMaxMs: 100 });
    await bus.init();
    const conversation = `c-down-${randomUUID().slice(0, 6)}`;
    const sent = Array.from({ length: 5 }, () => msg(conversation));
    await Promise.all(sent.map((m) => bus.publish(m)));

    let failing = true;
    let attempts = 0;
    const delivered: string[] = [];
    await bus.consume(async (batch) => {
      attempts++;
      if (failing) throw new Error('dependency down');
      delivered.push(...batch.messages.map((m) => m.id));
    });
    await waitFor(() => attempts >= 6, 15_000, 'several retries');
    expect(await committedSum(config.groupId, config.topic)).toBe(0);
    failing = false;
    await waitFor(() => delivered.length >= 5, 10_000, 'delivery once the dependency is back');
    expect(delivered).toEqual(sent.map((m) => m.id));
  });

  it('keeps the group membership through a handler slower than the session timeout (heartbeats while it runs)', async () => {
    const config = freshConfig();
    const bus = driver(config, { sessionTimeoutMs: 2_000, heartbeatIntervalMs: 300 });
    await bus.init();
    const sent = Array.from({ length: 5 }, () => msg(`c-slow-${randomUUID().slice(0, 6)}`));
    await Promise.all(sent.map((m) => bus.publish(m)));
    const seen: string[] = [];
    await bus.consume(async (batch) => {
      await new Promise((r) => setTimeout(r, 3_500)); // simulated slow work, longer than the session
      seen.push(...batch.messages.map((m) => m.id));
    });
    await waitFor(
      async () => (await committedSum(config.groupId, config.topic)) === 5,
      20_000,
      'slow batch committed',
    );
    expect(seen.sort()).toEqual(sent.map((m) => m.id).sort()); // once each: no rebalance, no redelivery
  });

  it('skips (and commits past) records that are not IngressMessage JSON without blocking the partition', async () => {
    const config = freshConfig();
    const bus = driver(config);
    await bus.init();
    const conversation = `c-poison-${randomUUID().slice(0, 6)}`;
    const a = msg(conversation);
    const b = msg(conversation);
    const c = msg(conversation);
    await bus.publish(a);
    const raw = rawKafka.producer({ allowAutoTopicCreation: false });
    await raw.connect();
    try {
      await raw.send({
        topic: config.topic,
        acks: -1,
        messages: [
          { key: conversation, value: 'not json {' },
          { key: conversation, value: JSON.stringify({ hello: 'world' }) },
          { key: conversation, value: null },
        ],
      });
    } finally {
      await raw.disconnect();
    }
    await bus.publish(b);
    await bus.publish(c);

    const rec = recorder();
    await bus.consume(rec.handler);
    await waitFor(() => rec.messages.length >= 3, 15_000, 'valid messages around the malformed ones');
    expect(rec.messages.map((m) => m.id)).toEqual([a.id, b.id, c.id]);
    await waitFor(
      async () => (await committedSum(config.groupId, config.topic)) === 6,
      10_000,
      'commit past the poison',
    );
  });

  it('stopConsuming finishes and commits the batch in progress; a new instance in the same group resumes after it, fast', async () => {
    const config = freshConfig();
    const a = driver(config);
    await a.init();

    const N1 = 40;
    await Promise.all(Array.from({ length: N1 }, (_, i) => a.publish(msg(`c-${i % 8}`))));
    let gate: (() => void) | null = null;
    let inHandler = 0;
    const seenByA: string[] = [];
    const joinStartA = Date.now();
    await a.consume(async (batch) => {
      inHandler++;
      if (gate === null && seenByA.length >= N1) await new Promise<void>((r) => (gate = r));
      seenByA.push(...batch.messages.map((m) => m.id));
      inHandler--;
    });
    await waitFor(() => seenByA.length >= N1, 15_000, 'first batch consumed by A');
    const firstJoinMs = Date.now() - joinStartA;

    // A batch whose handler is still running when the stop begins.
    const N2 = 10;
    const second = Array.from({ length: N2 }, () => msg('c-slow'));
    await Promise.all(second.map((m) => a.publish(m)));
    await waitFor(() => gate !== null, 10_000, 'A inside the slow handler');
    let stopped = false;
    const stopping = a.stopConsuming().then(() => (stopped = true));
    await waitFor(
      () => committedSum(config.groupId, config.topic).then((n) => n === N1),
      5_000,
      'first batch committed',
    );
    expect(stopped).toBe(false); // stop waits for the handler in progress
    (gate as unknown as () => void)();
    await stopping;
    expect(inHandler).toBe(0);
    expect(seenByA).toHaveLength(N1 + N2);
    expect(await committedSum(config.groupId, config.topic)).toBe(N1 + N2); // committed before leaving

    // The next process: same group, picks up exactly where A committed.
    const N3 = 25;
    const third = Array.from({ length: N3 }, (_, i) => msg(`c-${i % 5}`));
    await Promise.all(third.map((m) => a.publish(m)));
    const b = driver(config);
    await b.init();
    const rec = recorder();
    const t0 = Date.now();
    let firstBatchAt = 0;
    await b.consume(async (batch) => {
      if (!firstBatchAt) firstBatchAt = Date.now();
      await rec.handler(batch);
    });
    const joinedMs = Date.now() - t0;
    await waitFor(() => rec.messages.length >= N3, 15_000, 'B resumes');
    console.log(
      `consumer group: first join+first batch ${firstJoinMs} ms; after clean stop: rejoin ${joinedMs} ms, first batch after ${firstBatchAt - t0} ms`,
    );
    await waitFor(
      async () => (await committedSum(config.groupId, config.topic)) === N1 + N2 + N3,
      10_000,
      'B commits',
    );
    expect(rec.messages.map((m) => m.id).sort()).toEqual(third.map((m) => m.id).sort()); // none twice, none skipped
  });

  it('rejects publish, init and ping within a bounded time when the broker is unreachable', async () => {
    const config = freshConfig({ brokers: ['127.0.0.1:1'] });
    const bus = driver(config);
    let t = Date.now();
    await expect(bus.init()).rejects.toThrow();
    console.log(`unreachable broker: init rejected after ${Date.now() - t} ms`);
    t = Date.now();
    await expect(bus.publish(msg('c-x'))).rejects.toThrow();
    const publishMs = Date.now() - t;
    console.log(`unreachable broker: publish rejected after ${publishMs} ms`);
    expect(publishMs).toBeLessThan(10_000);
    t = Date.now();
    await expect(bus.ping()).rejects.toThrow();
    expect(Date.now() - t).toBeLessThan(10_000);
  });

  it('rejects publish within a bounded time when the broker accepts connections but never answers', async () => {
    const server = net.createServer((socket) => serverSockets.add(socket)); // swallow everything, answer nothing
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    const bus = driver(freshConfig({ brokers: [`127.0.0.1:${port}`] }), { publishTimeoutMs: 6_000 });
    const t = Date.now();
    await expect(bus.publish(msg('c-hung'))).rejects.toThrow();
    const ms = Date.now() - t;
    console.log(`hung broker: publish rejected after ${ms} ms`);
    expect(ms).toBeLessThan(10_000);
  });

  it('recovers after an outage without a restart: publish fails fast while down, works again once back', async () => {
    let down = false;
    const sockets = new Set<net.Socket>();
    const socketFactory: ISocketFactory = ({ host, port, onConnect }) => {
      const socket = net.connect(down ? { host: '127.0.0.1', port: 1 } : { host, port }, onConnect);
      socket.setKeepAlive(true, 60_000);
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      return socket;
    };
    const config = freshConfig();
    const bus = driver(config, { socketFactory });
    await bus.init();
    const rec = recorder();
    await bus.consume(rec.handler); // a consumer running across the outage
    const before = msg('c-outage');
    await bus.publish(before);
    await waitFor(() => rec.messages.length === 1, 10_000, 'consumed before the outage');
    await bus.ping();

    // Broker gone: existing connections die silently (no FIN/RST reaches kafkajs, like a vanished
    // host), new connections are refused.
    down = true;
    for (const s of sockets) s.destroy();
    const t = Date.now();
    await expect(bus.publish(msg('c-outage'))).rejects.toThrow();
    const failMs = Date.now() - t;
    await expect(bus.ping()).rejects.toThrow();

    down = false;
    const back = Date.now();
    const ok = msg('c-outage');
    await waitFor(() => bus.publish(ok).then(() => true), 20_000, 'publish after the broker is back');
    console.log(
      `outage: publish rejected after ${failMs} ms; first publish ok ${Date.now() - back} ms after recovery`,
    );
    expect(failMs).toBeLessThan(10_000);
    await waitFor(() => bus.ping().then(() => true), 10_000, 'ping after recovery');
    const t1 = Date.now();
    await waitFor(
      () => rec.messages.some((m) => m.id === ok.id),
      60_000,
      'message published after recovery consumed',
    );
    console.log(
      `outage: running consumer delivered the post-recovery message ${Date.now() - t1} ms after it was published`,
    );
  });

  it('dead-letters to the DLQ topic (created at init): key = conversation, value = reason, partition, offset and the record verbatim', async () => {
    const config = freshConfig();
    const bus = driver(config);
    await bus.init();
    const { topics: meta } = await admin.fetchTopicMetadata({ topics: [config.dlqTopic] });
    expect(meta[0].partitions).toHaveLength(PARTITIONS);

    // A record whose body nests far beyond what JSON.stringify can take: it must survive verbatim.
    const conversation = `c-dlq-${randomUUID().slice(0, 6)}`;
    const poison = msg(conversation);
    const rawPoison = JSON.stringify({ ...poison, body: null }).replace(
      '"body":null',
      `"body":${deepJson(10_000)}`,
    );
    const raw = rawKafka.producer({ allowAutoTopicCreation: false });
    await raw.connect();
    try {
      await raw.send({ topic: config.topic, acks: -1, messages: [{ key: conversation, value: rawPoison }] });
    } finally {
      await raw.disconnect();
    }
    const after = msg(conversation);
    await bus.publish(after);

    const seen: string[] = [];
    await bus.consume(async (batch) => {
      for (const m of batch.messages) {
        if (m.id === poison.id) await bus.deadLetter(m, 'unserializable: RangeError: test', batch.partition);
        else seen.push(m.id);
      }
    });
    await waitFor(() => seen.includes(after.id), 15_000, 'the message after the poison');
    await waitFor(async () => (await committedSum(config.groupId, config.topic)) === 2, 10_000, 'committed');

    // One written directly (never consumed): serialised, with a body that cannot be replaced by a marker.
    const direct = msg(conversation, { text: 'direct' });
    await bus.deadLetter(direct, 'outbox_rejected: test', 1);

    const records = await readTopic(config.dlqTopic, 2);
    expect(records.map((r) => r.key)).toEqual([conversation, conversation]);
    const [first, second] = records.map((r) => r.value!);
    expect(first.endsWith(`"message":${rawPoison}}`)).toBe(true); // verbatim
    const parsed = JSON.parse(first) as DeadLetter & { offset: string };
    expect(parsed).toMatchObject({ reason: 'unserializable: RangeError: test', offset: '0' });
    expect((parsed.message as { id: string }).id).toBe(poison.id);
    expect(typeof parsed.at).toBe('number');
    expect(JSON.parse(second)).toMatchObject({
      reason: 'outbox_rejected: test',
      partition: 1,
      message: direct,
    });
  });

  it('dead-letters records that are not IngressMessage JSON before committing past them, and retries when that write fails', async () => {
    const config = freshConfig();
    const counted: string[] = [];
    const bus = driver(config, { retryMinMs: 50, onDeadLetter: (reason) => counted.push(reason) });
    await bus.init();
    const conversation = `c-malformed-${randomUUID().slice(0, 6)}`;
    const a = msg(conversation);
    await bus.publish(a);
    const raw = rawKafka.producer({ allowAutoTopicCreation: false });
    await raw.connect();
    try {
      await raw.send({
        topic: config.topic,
        acks: -1,
        messages: [
          { key: conversation, value: 'not json {' },
          { key: conversation, value: JSON.stringify({ hello: 'world' }) },
          { key: conversation, value: null },
        ],
      });
    } finally {
      await raw.disconnect();
    }
    const b = msg(conversation);
    await bus.publish(b);

    // The first dead-letter write fails: nothing may be committed past the malformed records.
    const producer = (bus as unknown as { producer: { current: Producer } }).producer.current;
    const sendBatch = producer.sendBatch.bind(producer);
    let dlqWrites = 0;
    jest.spyOn(producer, 'sendBatch').mockImplementation(async (req) => {
      if (req.topicMessages?.[0]?.topic === config.dlqTopic && ++dlqWrites === 1)
        throw new Error('simulated DLQ failure');
      return sendBatch(req);
    });
    const rec = recorder();
    await bus.consume(rec.handler);
    await waitFor(() => counted.length >= 3, 20_000, 'malformed records dead-lettered');
    await waitFor(async () => (await committedSum(config.groupId, config.topic)) === 5, 10_000, 'committed');
    expect(dlqWrites).toBeGreaterThanOrEqual(1);
    expect(counted).toEqual(['malformed', 'malformed', 'malformed']);
    // Redelivered after the failed write (the handler is idempotent), in order each time.
    expect(rec.messages.map((m) => m.id).slice(0, 2)).toEqual([a.id, b.id]);
    expect(rec.messages.length).toBeGreaterThanOrEqual(2);

    const records = await readTopic(config.dlqTopic, 3);
    const values = records.map((r) => JSON.parse(r.value!) as DeadLetter & { offset: string });
    expect(values.map((v) => [v.reason, v.offset, v.message])).toEqual([
      ['malformed', '1', 'not json {'],
      ['malformed', '2', JSON.stringify({ hello: 'world' })],
      ['malformed', '3', null],
    ]);
    expect(records.every((r) => r.key === conversation)).toBe(true);
  });
});
