import { OnApplicationShutdown } from '@nestjs/common';
import { Admin, ISocketFactory, Kafka, logLevel, Producer } from 'kafkajs';
import { AppConfig } from '../../config/app-config';
import { settledWithin } from '../../common/deadline';
import { BusRecord } from '../../protocol/bus-record';
import { RawStreamRecord } from '../../protocol/stream-records';
import {
  BatchHandler,
  GroupSubscription,
  MessageBus,
  OtherStreamRecord,
  PublishedRecord,
  RecordBatch,
} from '../message-bus';
import { ClientSlot } from './kafka-client-slot';
import { ConsumerDeadLetters, KafkaConsumer, RecordFilter } from './kafka-consumer';
import { KafkaDeadLetters } from './kafka-dead-letters';
import { nestLogCreator } from './kafka-log';
import { createProducer, KafkaProducer } from './kafka-producer';
import { createAdmin, KafkaTopics } from './kafka-topics';

/**
 * The Kafka `MessageBus` driver: its tuning knobs, the kafkajs client, the producer and admin clients
 * (ClientSlots shared by the parts below), and shutdown. The work is done by:
 * - `kafka-topics.ts`: ingress and dead-letter topics at startup, `ping`;
 * - `kafka-producer.ts`: ordered, batched `publish` and the dead-letter produce request;
 * - `kafka-consumer.ts`: the consumer's lifecycle and batch handling (`consume`, `stopConsuming`);
 * - `kafka-dead-letters.ts`: the dead-letter record (`deadLetter`, malformed records).
 */

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
  /** Consumer lag of a partition (high watermark - next offset to commit), after each fetch and commit. */
  onLag?: (partition: number, lag: number) => void;
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
  // A router killed with -9 holds its partitions until the session times out: 6 s is the brokers'
  // default group.min.session.timeout.ms. Shorter stalls less, but a router whose event loop stops
  // longer than that (GC, CPU starvation) loses its partitions and the group rebalances
  // (docs/performance.md "Recovery"). The heartbeat is a sixth of it, so a few lost heartbeats are tolerated.
  sessionTimeoutMs: 6_000,
  rebalanceTimeoutMs: 30_000,
  heartbeatIntervalMs: 1_000,
  maxWaitTimeMs: 1_000,
  retryMinMs: 250,
  retryMaxMs: 10_000,
  pingTimeoutMs: 3_000,
};

export class KafkaBusDriver extends MessageBus implements OnApplicationShutdown {
  private readonly opts: KafkaBusOptions;
  private readonly producer: ClientSlot<Producer>;
  private readonly admin: ClientSlot<Admin>;
  /** Replaced clients still disconnecting (awaited, bounded, by close). */
  private readonly retiring = new Set<Promise<void>>();
  private readonly topics: KafkaTopics;
  private readonly producing: KafkaProducer;
  private readonly deadLetters: KafkaDeadLetters;
  private readonly consuming: KafkaConsumer;
  private readonly kafka: Kafka;
  /** consumeAsGroup consumers still running (stopped by close). */
  private readonly groupConsumers = new Set<KafkaConsumer<RawStreamRecord>>();

  /** Set by close once the consumer has stopped: from then on nothing is published or consumed. */
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly config: KafkaBusConfig,
    options: Partial<KafkaBusOptions> = {},
  ) {
    super();
    this.opts = { ...DEFAULT_KAFKA_BUS_OPTIONS, ...options };
    const kafka = (this.kafka = new Kafka({
      clientId: config.clientId,
      brokers: config.brokers,
      connectionTimeout: this.opts.connectionTimeoutMs,
      requestTimeout: this.opts.requestTimeoutMs,
      enforceRequestTimeout: true,
      logLevel: logLevel.WARN,
      logCreator: nestLogCreator(),
      ...(this.opts.socketFactory ? { socketFactory: this.opts.socketFactory } : {}),
      // Client default; createProducer, createAdmin and the consumer (startConsumer) each override it.
      retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1_000 },
    }));
    this.producer = new ClientSlot(
      () => createProducer(kafka),
      (old) => this.retire(old),
    );
    this.admin = new ClientSlot(
      () => createAdmin(kafka),
      (old) => this.retire(old),
    );
    const isClosed = () => this.closed;
    this.topics = new KafkaTopics(this.admin, config, this.opts, isClosed);
    this.producing = new KafkaProducer(this.producer, config, this.opts, isClosed);
    this.deadLetters = new KafkaDeadLetters(this.producing, this.opts.onDeadLetter);
    this.consuming = new KafkaConsumer(kafka, config, this.opts, this.deadLetters, isClosed);
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

  /**
   * Creates the ingress and dead-letter topics if missing (tolerating a concurrent creation) and
   * connects the producer.
   */
  async init(): Promise<void> {
    await this.admin.connected();
    await this.topics.ensureTopic(this.config.topic);
    await this.topics.ensureTopic(this.config.dlqTopic);
    await this.producer.connected();
  }

  publish(message: PublishedRecord): Promise<void> {
    return this.producing.publish(message);
  }

  /** Through the same ordered producer as messages: a membership change is ordered with them. */
  publishRecord(record: OtherStreamRecord): Promise<void> {
    return this.producing.publish(record);
  }

  /**
   * A consumer of its own group on the ingress topic (the event stream): same run/commit/back-off
   * machinery as the router's, every JSON object accepted, anything else skipped (the router's
   * consumer dead-letters it; one dead letter is enough).
   */
  async consumeAsGroup(
    groupId: string,
    handler: (batch: RecordBatch) => Promise<void>,
  ): Promise<GroupSubscription> {
    if (this.closed) throw new Error('kafka bus is closed');
    const consumer = new KafkaConsumer<RawStreamRecord>(
      this.kafka,
      { ...this.config, groupId },
      // Lag is reported for the router's group only (relay_kafka_consumer_lag).
      { ...this.opts, onLag: undefined },
      SKIP_MALFORMED,
      () => this.closed,
      ANY_RECORD,
    );
    this.groupConsumers.add(consumer);
    await consumer.consume(({ partition, messages }) => handler({ partition, records: messages }));
    return {
      stop: async () => {
        await consumer.stop();
        this.groupConsumers.delete(consumer);
      },
    };
  }

  publishReceipt(record: PublishedRecord): Promise<void> {
    return this.producing.publish(record);
  }

  consume(handler: BatchHandler): Promise<void> {
    return this.consuming.consume(handler);
  }

  stopConsuming(): Promise<void> {
    return this.consuming.stop();
  }

  deadLetter(message: BusRecord, reason: string, partition: number): Promise<void> {
    return this.deadLetters.quarantine(message, reason, partition);
  }

  ping(): Promise<void> {
    return this.topics.ping();
  }

  async close(): Promise<void> {
    this.closing ??= this.doClose();
    await this.closing;
  }

  private async doClose(): Promise<void> {
    await Promise.all([this.stopConsuming(), ...[...this.groupConsumers].map((c) => c.stop())]);
    this.closed = true;
    // Let a produce request in flight settle (bounded by kafkajs' own timeouts) before disconnecting.
    await this.producing.settled();
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

const ANY_RECORD: RecordFilter<RawStreamRecord> = {
  accept: (v): v is RawStreamRecord => typeof v === 'object' && v !== null && !Array.isArray(v),
  skip: () => true,
  deadLettersMalformed: false,
};

const SKIP_MALFORMED: ConsumerDeadLetters<RawStreamRecord> = {
  remember: () => undefined,
  writeMalformed: async () => undefined,
};
