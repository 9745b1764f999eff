import { Logger, OnApplicationShutdown } from '@nestjs/common';
import {
  Admin,
  Batch,
  ConfigResourceTypes,
  Consumer,
  ConsumerCrashEvent,
  EachBatchPayload,
  ISocketFactory,
  Kafka,
  logLevel,
  Partitioners,
  Producer,
} from 'kafkajs';
import { AppConfig } from '../../config/app-config';
import { Batcher } from '../../common/batcher';
import { withTimeout } from '../../common/deadline';
import { IngressMessage } from '../../protocol/envelope';
import { isIngressMessage } from '../../protocol/wire-schemas';
import { BatchHandler, DeadLetter, MessageBus } from '../message-bus';
import { ClientSlot } from './kafka-client-slot';
import { nestLogCreator } from './kafka-log';

export type KafkaBusConfig = AppConfig['kafka'];

/** Tuning knobs; the defaults are the production values, tests shorten a few. */
export interface KafkaBusOptions {
  /** Hard upper bound for one `publish` (queueing + send + acks=all). */
  publishTimeoutMs: number;
  /** kafkajs per-request timeout; the broker-side ack timeout of a produce is `ackTimeoutMs`. */
  requestTimeoutMs: number;
  ackTimeoutMs: number;
  connectionTimeoutMs: number;
  /** Messages per produce request (the Batcher's maxBatch) and bytes per produce request. */
  maxPublishBatch: number;
  maxPublishBytes: number;
  /** Messages per handler call; a fetched batch is split into runs of at most this many. */
  maxHandlerBatch: number;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Fetch long-poll; also bounds how long stopConsuming waits for an idle fetch to return. */
  maxWaitTimeMs: number;
  /** Back-off between redeliveries of a batch whose handler threw: min doubling up to max. */
  retryMinMs: number;
  retryMaxMs: number;
  pingTimeoutMs: number;
  /** Called once per record the driver itself dead-lettered (reason `malformed`), e.g. to count it. */
  onDeadLetter?: (reason: string) => void;
  /** Test hook: lets a test cut and restore the network path to the broker. */
  socketFactory?: ISocketFactory;
}

export const DEFAULT_KAFKA_BUS_OPTIONS: KafkaBusOptions = {
  publishTimeoutMs: 8_000,
  requestTimeoutMs: 5_000,
  ackTimeoutMs: 4_000,
  connectionTimeoutMs: 3_000,
  maxPublishBatch: 500,
  maxPublishBytes: 900 * 1024,
  maxHandlerBatch: 500,
  sessionTimeoutMs: 10_000,
  rebalanceTimeoutMs: 30_000,
  heartbeatIntervalMs: 3_000,
  maxWaitTimeMs: 1_000,
  retryMinMs: 250,
  retryMaxMs: 10_000,
  pingTimeoutMs: 3_000,
};

interface PendingPublish {
  message: IngressMessage;
  value: string;
  bytes: number;
  /** Set when the caller gave up (publish timed out): not sent if its flush has not started yet. */
  abandoned: boolean;
  /** Publish order; see failedThrough. */
  seq: number;
}

/** Per-item outcome of a flush: null = acknowledged by the broker. */
type PublishOutcome = Error | null;

interface Run {
  messages: IngressMessage[];
  /** Records of this run that are not IngressMessage JSON: dead-lettered before the run is committed. */
  malformed: { key: Buffer | null; value: string | null; offset: string }[];
  firstOffset: string;
  /** Offset of the last record this run covers (valid or skipped). */
  lastOffset: string;
}

/** Where a consumed message came from, so a dead letter can carry the record exactly as it was. */
interface RecordOrigin {
  raw: string;
  offset: string;
}

/** Group-membership errors: kafkajs must see them to rejoin; everything else is retried here. */
const REBALANCE_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID']);

function errorType(err: unknown): string | undefined {
  const t = (err as { type?: unknown } | null)?.type;
  return typeof t === 'string' ? t : undefined;
}

function isTopicAlreadyExists(err: unknown): boolean {
  if (errorType(err) === 'TOPIC_ALREADY_EXISTS') return true;
  const inner = (err as { errors?: unknown[] } | null)?.errors;
  return (
    Array.isArray(inner) && inner.length > 0 && inner.every((e) => errorType(e) === 'TOPIC_ALREADY_EXISTS')
  );
}

/** kafkajs aggregates per-topic failures; the useful reason is inside. */
function describeKafkaError(err: unknown): string {
  const e = err as { message?: string; errors?: { message?: string; type?: string }[] };
  const inner = Array.isArray(e?.errors) ? e.errors.map((x) => x.type ?? x.message).join(', ') : '';
  return `${e?.message ?? String(err)}${inner ? ` (${inner})` : ''}`;
}

function nextOffset(offset: string): string {
  return (BigInt(offset) + 1n).toString();
}

/**
 * The dead-letter record value: `{"reason", "partition", "offset", "at", "message"}` with `message`
 * spliced in as JSON text, so a record whose value cannot go through JSON.stringify again (nesting
 * beyond the stack, the very reason it may be here) is kept exactly as it was consumed.
 */
function deadLetterValue(
  messageJson: string,
  meta: { reason: string; partition: number; offset?: string },
): string {
  const head: Omit<DeadLetter, 'message'> & { offset?: string } = {
    reason: meta.reason,
    partition: meta.partition,
    ...(meta.offset === undefined ? {} : { offset: meta.offset }),
    at: Date.now(),
  };
  return `${JSON.stringify(head).slice(0, -1)},"message":${messageJson}}`;
}

/** JSON of a message that did not come from a consumed record; its body is replaced if it cannot be serialised. */
function serializeForDeadLetter(message: IngressMessage): string {
  try {
    return JSON.stringify(message);
  } catch (err) {
    return JSON.stringify({ ...message, body: `[not serialisable: ${(err as Error).message}]` });
  }
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits for `p` to settle, but at most `ms`; never throws. True if it settled in time. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
  ]);
  clearTimeout(timer);
  return settled;
}

/**
 * Kafka implementation of the MessageBus contract.
 *
 * Producer side (every role that publishes): one producer, acks=all, maxInFlightRequests=1, not idempotent;
 * concurrent `publish` calls are coalesced by a Batcher into one produce request at a time, each caller
 * settling with the broker's answer for the request that carried its message. Key = conversation_id
 * (Java-compatible murmur2 partitioner), value = the whole IngressMessage as JSON.
 *
 * Consumer side (router only, created lazily by `consume`): eachBatch, nothing auto-resolved or
 * auto-committed. A fetched batch is handed to the handler in runs; each run's offset is committed
 * explicitly once the handler resolved, then resolved locally. A run whose handler throws is neither
 * committed nor resolved: the partition is paused and resumed after a back-off, and the next fetch
 * starts at the same offset, so the same messages come again (no consumer crash, no rejoin, other
 * partitions keep flowing).
 *
 * Dead letters (`dlqTopic`, created at init with the ingress topic's partitions and retention; key =
 * conversation_id, value = {reason, partition, offset, at, message}): `deadLetter` for the router's
 * quarantine, and records that are not IngressMessage JSON, which the driver moves there itself
 * (reason `malformed`, message = the raw value as a string) before it commits past them.
 */
export class KafkaBusDriver extends MessageBus implements OnApplicationShutdown {
  private readonly logger = new Logger('KafkaBus');
  private readonly opts: KafkaBusOptions;
  private readonly kafka: Kafka;
  private readonly producer: ClientSlot<Producer>;
  private readonly admin: ClientSlot<Admin>;
  /** Replaced clients still disconnecting (awaited, bounded, by close). */
  private readonly retiring = new Set<Promise<void>>();
  private readonly batcher: Batcher<PendingPublish, PublishOutcome>;

  private closed = false;
  private closing: Promise<void> | null = null;
  private lastFlush: Promise<unknown> = Promise.resolve();
  private publishSeq = 0;
  /**
   * Every publish with seq <= failedThrough that was not yet sent fails without being sent: when a
   * produce request fails, the messages queued behind it (the same client's next frames among them)
   * must not overtake it into the log; they fail too and the clients retry them in order.
   */
  private failedThrough = 0;

  private consumer: Consumer | null = null;
  private handler: BatchHandler | null = null;
  private stopping = false;
  private lifecycleTail: Promise<void> = Promise.resolve();
  private readonly failures = new Map<number, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Raw record of every message handed to the handler (weakly held): dead letters carry it verbatim. */
  private readonly origins = new WeakMap<IngressMessage, RecordOrigin>();

  constructor(
    private readonly config: KafkaBusConfig,
    options: Partial<KafkaBusOptions> = {},
  ) {
    super();
    this.opts = { ...DEFAULT_KAFKA_BUS_OPTIONS, ...options };
    this.kafka = new Kafka({
      clientId: config.clientId,
      brokers: config.brokers,
      connectionTimeout: this.opts.connectionTimeoutMs,
      requestTimeout: this.opts.requestTimeoutMs,
      enforceRequestTimeout: true,
      logLevel: logLevel.WARN,
      logCreator: nestLogCreator(),
      ...(this.opts.socketFactory ? { socketFactory: this.opts.socketFactory } : {}),
      // Client default; producer, consumer and admin each override it below.
      retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1_000 },
    });
    this.producer = new ClientSlot(
      () => this.createProducer(),
      (old) => this.retire(old),
    );
    this.admin = new ClientSlot(
      () => this.createAdmin(),
      (old) => this.retire(old),
    );
    this.batcher = new Batcher((items) => this.flush(items), this.opts.maxPublishBatch);
  }

  private createProducer(): Producer {
    return this.kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
      // Not idempotent (kafkajs marks it experimental, and it is unsafe here): kafkajs rewinds the partition
      // sequence after a failed request and gives the *next* (different) batch the same sequence; if the
      // failed request had in fact been written, the broker treats the new batch as a duplicate and
      // drops it while acking it (a false ack), or answers OUT_OF_ORDER_SEQUENCE_NUMBER forever (kafkajs
      // has no epoch bump) until the process restarts. Duplicates are harmless here (the router is
      // idempotent); false acks and a wedged producer are not.
      idempotent: false,
      maxInFlightRequests: 1,
      // Few, short retries: publish must fail fast when the broker is unreachable.
      retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1_000 },
    });
  }

  private createAdmin(): Admin {
    return this.kafka.admin({ retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2_000 } });
  }

  /**
   * kafkajs never drops a connection whose requests time out (tulios/kafkajs#919): after a broker
   * vanished without FIN/RST (host gone, partition, NAT drop) it keeps timing out on the zombie socket
   * until the kernel gives up (~15 min with tcp_retries2). After any failed produce/ping the client is
   * replaced by a fresh one (new connections, fresh metadata); the old one disconnects in the background.
   */
  private retire(client: Producer | Admin): void {
    const done: Promise<void> = settledWithin(client.disconnect(), 5_000).then(() => {
      this.retiring.delete(done);
    });
    this.retiring.add(done);
  }

  /** A flush failed: fail whatever was published until now and is still queued, then reconnect. */
  private publishFailed(producer: Producer): void {
    this.failedThrough = this.publishSeq;
    this.producer.replace(producer);
  }

  // ------------------------------------------------------------------------------------------ startup

  /**
   * Creates the ingress and dead-letter topics if missing (tolerating a concurrent creation) and
   * connects the producer.
   */
  async init(): Promise<void> {
    await this.admin.connected();
    await this.ensureTopic(this.config.topic);
    await this.ensureTopic(this.config.dlqTopic);
    await this.producer.connected();
  }

  /** Same partitions and retention for both topics: a dead letter lives at least as long as a message. */
  private async ensureTopic(topic: string): Promise<void> {
    const { partitions, replicationFactor } = this.config;
    const retentionMs = Math.max(24, this.config.retentionHours) * 3_600_000;
    let created = false;
    // Check first: on every start but the first the topic exists, and kafkajs logs a failed
    // CreateTopics as an error even when we handle TOPIC_ALREADY_EXISTS.
    const exists = (await this.admin.current.listTopics()).includes(topic);
    try {
      if (!exists)
        created = await this.admin.current.createTopics({
          waitForLeaders: true,
          timeout: 10_000,
          topics: [
            {
              topic,
              numPartitions: partitions,
              replicationFactor,
              configEntries: [{ name: 'retention.ms', value: String(retentionMs) }],
            },
          ],
        });
    } catch (err) {
      // Another node created it between our check and our request: fine.
      if (!isTopicAlreadyExists(err))
        throw new Error(`creating topic ${topic} failed: ${describeKafkaError(err)}`);
    }
    if (created) {
      this.logger.log(
        `created topic ${topic} (${partitions} partitions, replication ${replicationFactor}, retention ${retentionMs} ms)`,
      );
    }
    // Created by someone else (possibly a moment ago): wait until every partition has a leader.
    const actual = await this.waitForLeaders(topic, 10_000);
    if (created) return;
    if (actual !== partitions) {
      this.logger.warn(
        `topic ${topic} exists with ${actual} partitions (configured: ${partitions}); using it as is`,
      );
    }
    const described = await this.admin.current.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
    });
    const value = described.resources[0]?.configEntries.find(
      (e) => e.configName === 'retention.ms',
    )?.configValue;
    const existing = value === undefined ? NaN : Number(value);
    if (existing !== -1 && !(existing >= retentionMs)) {
      this.logger.warn(
        `topic ${topic} has retention.ms=${value ?? '?'} (< ${retentionMs}): ${
          topic === this.config.dlqTopic
            ? 'dead letters expire sooner than messages'
            : 'routers that are down longer lose messages'
        }`,
      );
    }
  }

  /** Returns the partition count once the topic's metadata shows a leader for every partition. */
  private async waitForLeaders(topic: string, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const { topics } = await this.admin.current.fetchTopicMetadata({ topics: [topic] });
        const parts = topics[0]?.partitions ?? [];
        if (parts.length > 0 && parts.every((p) => p.leader >= 0)) return parts.length;
      } catch (err) {
        last = err;
      }
      if (Date.now() > deadline) {
        const why = last instanceof Error ? `: ${last.message}` : '';
        throw new Error(`topic ${topic} has no leaders after ${timeoutMs} ms${why}`);
      }
      await delay(100);
    }
  }

  // ---------------------------------------------------------------------------------------- producing

  async publish(message: IngressMessage): Promise<void> {
    if (this.closed) throw new Error('kafka bus is closed');
    const value = JSON.stringify(message);
    const item: PendingPublish = {
      message,
      value,
      bytes: Buffer.byteLength(value) + Buffer.byteLength(message.conversation_id) + 80,
      abandoned: false,
      seq: ++this.publishSeq,
    };
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        item.abandoned = true;
        reject(new Error(`kafka publish not acknowledged within ${this.opts.publishTimeoutMs} ms`));
      }, this.opts.publishTimeoutMs);
    });
    try {
      const outcome = await Promise.race([this.batcher.add(item), deadline]);
      if (outcome) throw outcome;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One Batcher flush: the items go out in arrival order in produce requests of at most
   * `maxPublishBytes` (a partition's record batch must stay under the broker's message.max.bytes),
   * sent one after the other. When a request fails, it and every later request of this flush fail:
   * nothing is sent after a message whose publish failed.
   */
  private async flush(items: PendingPublish[]): Promise<PublishOutcome[]> {
    // undefined = not settled yet; null = acknowledged by the broker.
    const failedThrough = this.failedThrough;
    const outcomes: (PublishOutcome | undefined)[] = items.map((it) =>
      it.abandoned
        ? new Error('publish abandoned by its caller')
        : it.seq <= failedThrough
          ? new Error('kafka publish failed: an earlier publish failed, not sent to keep the order')
          : undefined,
    );
    const live = items.flatMap((_, i) => (outcomes[i] === undefined ? [i] : []));
    // First outcome wins: a late kafkajs answer never overrides the timeout the caller was given.
    const settle = (indexes: number[], outcome: PublishOutcome) => {
      for (const i of indexes) if (outcomes[i] === undefined) outcomes[i] = outcome;
    };
    if (live.length === 0) return outcomes as PublishOutcome[];
    const producer = this.producer.current;
    const run = (async () => {
      try {
        await this.producer.connected();
      } catch (err) {
        const e = new Error(`kafka unavailable: ${(err as Error).message}`);
        settle(live, e);
        this.publishFailed(producer);
        return;
      }
      let start = 0;
      while (start < live.length) {
        let end = start;
        let bytes = 0;
        while (
          end < live.length &&
          (end === start || bytes + items[live[end]].bytes <= this.opts.maxPublishBytes)
        ) {
          bytes += items[live[end]].bytes;
          end++;
        }
        const chunk = live.slice(start, end);
        try {
          await producer.sendBatch({
            acks: -1,
            timeout: this.opts.ackTimeoutMs,
            topicMessages: [
              {
                topic: this.config.topic,
                messages: chunk.map((i) => ({
                  key: items[i].message.conversation_id,
                  value: items[i].value,
                })),
              },
            ],
          });
        } catch (err) {
          const e = new Error(`kafka publish failed: ${(err as Error).message}`);
          settle(live.slice(start), e);
          this.publishFailed(producer);
          return;
        }
        settle(chunk, null);
        start = end;
      }
    })();
    this.lastFlush = run;
    // kafkajs' own bound (request timeout x retries) can exceed publishTimeoutMs; the Batcher must not
    // stay blocked behind a hung request: give up on it, and on its producer's connections.
    const settled = await settledWithin(run, this.opts.publishTimeoutMs);
    if (!settled) {
      const e = new Error(`kafka publish not acknowledged within ${this.opts.publishTimeoutMs} ms`);
      settle(live, e);
      this.publishFailed(producer);
    }
    return outcomes.map((o) => (o === undefined ? new Error('kafka publish outcome unknown') : o));
  }

  // ---------------------------------------------------------------------------------------- consuming

  /**
   * Consumer lifecycle operations (start, stop, restart) run one at a time, in call order: a restart
   * never overlaps a stop, and a new consumer only starts once the previous one has left the group
   * (so two of our consumers never process the same partition at once).
   */
  private lifecycle(op: () => Promise<void>): Promise<void> {
    const run = this.lifecycleTail.then(op);
    this.lifecycleTail = run.catch(() => undefined);
    return run;
  }

  async consume(handler: BatchHandler): Promise<void> {
    if (this.closed) throw new Error('kafka bus is closed');
    if (this.handler && !this.stopping) throw new Error('kafka bus is already consuming');
    this.stopping = false;
    this.handler = handler;
    await this.lifecycle(() => this.startConsumer());
  }

  private async startConsumer(): Promise<void> {
    if (this.stopping || this.closed || this.consumer) return;
    const consumer = this.kafka.consumer({
      groupId: this.config.groupId,
      sessionTimeout: this.opts.sessionTimeoutMs,
      rebalanceTimeout: this.opts.rebalanceTimeoutMs,
      heartbeatInterval: this.opts.heartbeatIntervalMs,
      maxWaitTimeInMs: this.opts.maxWaitTimeMs,
      allowAutoTopicCreation: false,
      retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 5_000 },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.CRASH, (event: ConsumerCrashEvent) => this.onCrash(consumer, event));
    const timeouts: number[] = [];
    consumer.on(consumer.events.REQUEST_TIMEOUT, () => {
      const now = Date.now();
      timeouts.push(now);
      while (timeouts.length > 0 && timeouts[0] < now - 30_000) timeouts.shift();
      if (timeouts.length >= 2) {
        timeouts.length = 0;
        this.restartConsumer(consumer, 'requests to the broker keep timing out');
      }
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [this.config.topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: Math.max(1, Math.min(this.config.partitions, 4)),
        eachBatch: (payload) => this.eachBatch(payload),
      });
    } catch (err) {
      if (this.consumer === consumer) this.consumer = null;
      await consumer.disconnect().catch(() => undefined);
      throw err;
    }
  }

  /** Leaves the group: waits for the batches in progress (including their commit), then LeaveGroup. */
  private async stopCurrentConsumer(): Promise<void> {
    const consumer = this.consumer;
    this.consumer = null;
    if (consumer) await consumer.disconnect();
  }

  /**
   * Replaces the consumer by a fresh one (new connections). Used when kafkajs would otherwise keep
   * timing out on a zombie connection (tulios/kafkajs#919: a request timeout never recycles the socket;
   * without this the consumer only recovers after its retries are exhausted and it crashes, ~1 min).
   */
  private restartConsumer(consumer: Consumer, why: string): void {
    if (consumer !== this.consumer || this.stopping || this.closed) return;
    this.logger.warn(`restarting the consumer on fresh connections: ${why}`);
    this.lifecycle(async () => {
      if (consumer !== this.consumer || this.stopping || this.closed) return;
      await this.stopCurrentConsumer().catch((err: Error) =>
        this.logger.warn(`consumer stop: ${err.message}`),
      );
      await this.startConsumer();
    }).catch((err: Error) => this.scheduleStart(`consumer restart failed: ${err.message}`));
  }

  /** Starts a consumer after a pause, repeating until one runs (or we are stopping). */
  private scheduleStart(why: string, waitMs = 5_000): void {
    if (this.stopping || this.closed) return;
    this.logger.error(`${why}; starting a new consumer in ${waitMs} ms`);
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.lifecycle(() => this.startConsumer()).catch((err: Error) =>
        this.scheduleStart(`consumer start failed: ${err.message}`, waitMs),
      );
    }, waitMs);
    this.timers.add(t);
  }

  /**
   * kafkajs restarts a crashed consumer itself when the error is retriable; for a non-retriable crash
   * it gives up for good, which would leave a router silently idle: start a new one after a pause.
   * A consumer we already replaced or stopped must stay down: kafkajs may have scheduled its restart
   * concurrently with our disconnect, and stop() cancels that timer.
   */
  private onCrash(consumer: Consumer, event: ConsumerCrashEvent): void {
    const { error, restart } = event.payload;
    if (consumer !== this.consumer || this.stopping || this.closed) {
      setImmediate(() => void consumer.stop().catch(() => undefined));
      return;
    }
    if (restart) return;
    this.consumer = null;
    this.scheduleStart(`consumer crashed and will not restart itself (${error.message})`);
  }

  private async eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, isRunning, isStale, heartbeat, resolveOffset, commitOffsetsIfNecessary } = payload;
    const partition = batch.partition;
    const runs = this.splitBatch(batch);
    for (let r = 0; r < runs.length; r++) {
      const run = runs[r];
      // Stopping: finish (and commit) the run in progress, leave the rest uncommitted for the next owner.
      if (!isRunning() || isStale()) return;
      if (run.messages.length > 0) {
        try {
          await this.callHandler({ partition, messages: run.messages }, heartbeat);
        } catch (err) {
          this.retryLater(payload, run, `handler failed: ${(err as Error).message}`);
          return;
        }
      }
      // Nothing is committed past a record that is not in the dead-letter topic yet.
      if (run.malformed.length > 0) {
        try {
          await this.deadLetterMalformed(batch.topic, partition, run.malformed);
        } catch (err) {
          this.retryLater(payload, run, (err as Error).message);
          return;
        }
      }
      // The last run ends at the batch's last offset (which may lie past the last record, e.g. control records).
      const last = r === runs.length - 1 ? batch.lastOffset() : run.lastOffset;
      try {
        await commitOffsetsIfNecessary({
          topics: [{ topic: batch.topic, partitions: [{ partition, offset: nextOffset(last) }] }],
        });
      } catch (err) {
        if (REBALANCE_ERRORS.has(errorType(err) ?? '')) throw err; // kafkajs rejoins; the run comes again
        this.retryLater(payload, run, `offset commit failed: ${(err as Error).message}`);
        return;
      }
      resolveOffset(last);
      this.failures.delete(partition);
      if (r < runs.length - 1) await heartbeat();
    }
  }

  /** Parses a fetched batch and cuts it into runs of at most maxHandlerBatch valid messages. */
  private splitBatch(batch: Batch): Run[] {
    const runs: Run[] = [];
    let current: Run | null = null;
    for (const record of batch.messages) {
      let parsed: unknown;
      let valid = false;
      try {
        parsed = record.value ? JSON.parse(record.value.toString('utf8')) : undefined;
        valid = isIngressMessage(parsed);
      } catch {
        valid = false;
      }
      if (!current || (valid && current.messages.length >= this.opts.maxHandlerBatch)) {
        current = { messages: [], malformed: [], firstOffset: record.offset, lastOffset: record.offset };
        runs.push(current);
      }
      const raw = record.value ? record.value.toString('utf8') : null;
      if (valid) {
        current.messages.push(parsed as IngressMessage);
        this.origins.set(parsed as IngressMessage, { raw: raw!, offset: record.offset });
      } else {
        current.malformed.push({ key: record.key, value: raw, offset: record.offset });
        this.logger.warn(
          `malformed record at ${batch.topic}[${batch.partition}]@${record.offset} (not an IngressMessage JSON): moved to ${this.config.dlqTopic}`,
        );
      }
      current.lastOffset = record.offset;
    }
    return runs;
  }

  /** Runs the handler, heartbeating meanwhile so a slow batch does not cost the group membership. */
  private async callHandler(
    batch: { partition: number; messages: IngressMessage[] },
    heartbeat: () => Promise<void>,
  ): Promise<void> {
    const handler = this.handler;
    if (!handler) throw new Error('no handler');
    const timer = setInterval(() => {
      heartbeat().catch(() => undefined); // a rebalance shows up again at commit time
    }, this.opts.heartbeatIntervalMs);
    try {
      await handler(batch);
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * Redelivery without a consumer crash: the run is not resolved (so the next fetch for this
   * partition starts at its first offset) and the partition is paused for a growing back-off.
   */
  private retryLater(payload: EachBatchPayload, run: Run, why: string): void {
    const partition = payload.batch.partition;
    const n = (this.failures.get(partition) ?? 0) + 1;
    this.failures.set(partition, n);
    const wait = Math.min(this.opts.retryMaxMs, this.opts.retryMinMs * 2 ** Math.min(n - 1, 16));
    this.logger.warn(
      `partition ${partition}: ${why}; ${run.messages.length} messages from offset ${run.firstOffset} will be redelivered in ${wait} ms (attempt ${n})`,
    );
    if (!payload.isRunning()) return;
    const resume = payload.pause();
    const t = setTimeout(() => {
      this.timers.delete(t);
      resume();
    }, wait);
    this.timers.add(t);
  }

  // ------------------------------------------------------------------------------------- dead letters

  async deadLetter(message: IngressMessage, reason: string, partition: number): Promise<void> {
    const origin = this.origins.get(message);
    await this.produceDeadLetters([
      {
        key: message.conversation_id,
        value: deadLetterValue(origin?.raw ?? serializeForDeadLetter(message), {
          reason,
          partition,
          offset: origin?.offset,
        }),
      },
    ]);
  }

  private async deadLetterMalformed(topic: string, partition: number, records: Run['malformed']) {
    await this.produceDeadLetters(
      records.map((r) => ({
        key: r.key,
        value: deadLetterValue(JSON.stringify(r.value), { reason: 'malformed', partition, offset: r.offset }),
      })),
    );
    for (const r of records) {
      this.logger.warn(`dead-lettered malformed record ${topic}[${partition}]@${r.offset}`);
      this.opts.onDeadLetter?.('malformed');
    }
  }

  /**
   * One produce request to the dead-letter topic, acks=all, bounded by publishTimeoutMs. It goes
   * straight to the current producer, not through the ingress Batcher: dead letters are not ingress
   * publishes, take no part in their order (failedThrough) and must not wait behind them. A failure
   * replaces the producer like a failed publish does (kafkajs keeps dead sockets); an ingress request
   * in flight on the old producer then fails and marks failedThrough itself, so ingress order holds.
   */
  private async produceDeadLetters(
    messages: { key: string | Buffer | null; value: string }[],
  ): Promise<void> {
    if (this.closed) throw new Error('kafka bus is closed');
    const producer = this.producer.current;
    const send = (async () => {
      await this.producer.connected();
      await producer.sendBatch({
        acks: -1,
        timeout: this.opts.ackTimeoutMs,
        topicMessages: [{ topic: this.config.dlqTopic, messages }],
      });
    })();
    try {
      await withTimeout(
        send,
        this.opts.publishTimeoutMs,
        `not acknowledged within ${this.opts.publishTimeoutMs} ms`,
      );
    } catch (err) {
      send.catch(() => undefined);
      if (!this.closed) this.producer.replace(producer);
      throw new Error(`dead-letter write to ${this.config.dlqTopic} failed: ${(err as Error).message}`);
    }
  }

  async stopConsuming(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.lifecycle(() => this.stopCurrentConsumer());
  }

  // -------------------------------------------------------------------------------------- operations

  async ping(): Promise<void> {
    const admin = this.admin.current;
    const check = (async () => {
      await this.admin.connected();
      await admin.fetchTopicMetadata({ topics: [this.config.topic] });
    })();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        check,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`kafka did not answer within ${this.opts.pingTimeoutMs} ms`)),
            this.opts.pingTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      check.catch(() => undefined);
      // Fresh connections for the next ping (see retire): a zombie socket would fail every ping.
      if (!this.closed) this.admin.replace(admin);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.closing ??= this.doClose();
    await this.closing;
  }

  private async doClose(): Promise<void> {
    await this.stopConsuming();
    this.closed = true;
    // Let a produce request in flight settle (bounded by kafkajs' own timeouts) before disconnecting.
    await settledWithin(this.lastFlush, this.opts.publishTimeoutMs);
    await Promise.allSettled([
      settledWithin(this.producer.close(), 5_000),
      settledWithin(this.admin.close(), 5_000),
      ...this.retiring,
    ]);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }
}
