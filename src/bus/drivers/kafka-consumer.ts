import { Logger } from '@nestjs/common';
import { Batch, Consumer, ConsumerCrashEvent, EachBatchPayload, Kafka } from 'kafkajs';
import { AppConfig } from '../../config/app-config';
import { BusRecord } from '../../protocol/bus-record';
import { isStreamOnlyKind } from '../../protocol/stream-records';
import { isBusRecord } from '../../protocol/wire-schemas';
import { isRebalanceError } from './kafka-errors';

/**
 * The consuming side of the Kafka bus (router only, created lazily by `consume`): the consumer's
 * lifecycle (start, stop, restart on zombie connections or after a crash) and the handling of fetched
 * batches.
 *
 * eachBatch, nothing auto-resolved or auto-committed. A fetched batch is handed to the handler in runs;
 * each run's offset is committed explicitly once the handler resolved, then resolved locally. A run
 * whose handler throws is neither committed nor resolved: the partition is paused and resumed after a
 * back-off, and the next fetch starts at the same offset, so the same messages come again (no consumer
 * crash, no rejoin, other partitions keep flowing). Records that are not BusRecord JSON are
 * dead-lettered before their run is committed.
 */

export type KafkaConsumerConfig = Pick<
  AppConfig['kafka'],
  'topic' | 'groupId' | 'dlqTopic' | 'partitions' | 'partitionsConcurrently'
>;

/** The KafkaBusOptions this side reads. */
export interface KafkaConsumerOptions {
  maxHandlerBatch: number;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  heartbeatIntervalMs: number;
  maxWaitTimeMs: number;
  retryMinMs: number;
  retryMaxMs: number;
  /** Called with a partition's lag when a batch arrives and after each commit (e.g. for a gauge). */
  onLag?: (partition: number, lag: number) => void;
}

/** A record of a run that is not BusRecord JSON. */
export interface MalformedRecord {
  key: Buffer | null;
  value: string | null;
  offset: string;
}

/** What the consumer needs from the dead-letter path (KafkaDeadLetters). */
export interface ConsumerDeadLetters<T = BusRecord> {
  /** The raw record a message was parsed from, for its dead letter should the router quarantine it. */
  remember(message: T, raw: string, offset: string): void;
  /** Resolves once the records are durable in the dead-letter topic. */
  writeMalformed(topic: string, partition: number, records: MalformedRecord[]): Promise<void>;
}

/**
 * What a consumer accepts from the topic. The router's: bus records (messages, receipts, membership
 * changes, which drop its member cache, and kinds a newer writer added); presence records, written for the
 * stream's readers only, are committed past, not handed over.
 * A group consumer of the event stream (MessageBus.consumeAsGroup) takes every JSON object.
 */
export interface RecordFilter<T> {
  /** True: hand the record to the handler. */
  accept(parsed: unknown): parsed is T;
  /** Valid JSON of a kind this consumer skips (committed past, not dead-lettered). */
  skip(parsed: unknown): boolean;
  /** Records neither accepted nor skipped are dead-lettered (the router) or only skipped. */
  deadLettersMalformed: boolean;
}

export const ROUTER_RECORDS: RecordFilter<BusRecord> = {
  accept: (v): v is BusRecord => isBusRecord(v) && !isStreamOnlyKind(v),
  skip: (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && isStreamOnlyKind(v),
  deadLettersMalformed: true,
};

interface Run<T> {
  messages: T[];
  /** Records of this run that the filter neither accepts nor skips: dead-lettered before the run is committed. */
  malformed: MalformedRecord[];
  firstOffset: string;
  /** Offset of the last record this run covers (valid or skipped). */
  lastOffset: string;
}

function nextOffset(offset: string): string {
  return (BigInt(offset) + 1n).toString();
}

/** Records of the partition at or after `next` (the offset the group would resume from). */
export function partitionLag(highWatermark: string, next: string): number {
  const lag = BigInt(highWatermark) - BigInt(next);
  return lag > 0n ? Number(lag) : 0;
}

export class KafkaConsumer<T = BusRecord> {
  private readonly logger = new Logger('KafkaBus');
  private consumer: Consumer | null = null;
  private handler: ((batch: { partition: number; messages: T[] }) => Promise<void>) | null = null;
  private stopping = false;
  private lifecycleTail: Promise<void> = Promise.resolve();
  private readonly failures = new Map<number, number>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly kafka: Kafka,
    private readonly config: KafkaConsumerConfig,
    private readonly opts: KafkaConsumerOptions,
    private readonly deadLetters: ConsumerDeadLetters<T>,
    private readonly isClosed: () => boolean,
    private readonly filter: RecordFilter<T> = ROUTER_RECORDS as unknown as RecordFilter<T>,
  ) {}

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

  async consume(handler: (batch: { partition: number; messages: T[] }) => Promise<void>): Promise<void> {
    if (this.isClosed()) throw new Error('kafka bus is closed');
    if (this.handler && !this.stopping) throw new Error('kafka bus is already consuming');
    this.stopping = false;
    this.handler = handler;
    await this.lifecycle(() => this.startConsumer());
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.lifecycle(() => this.stopCurrentConsumer());
  }

  private async startConsumer(): Promise<void> {
    if (this.stopping || this.isClosed() || this.consumer) return;
    const consumer = this.kafka.consumer({
      groupId: this.config.groupId,
      sessionTimeout: this.opts.sessionTimeoutMs,
      rebalanceTimeout: this.opts.rebalanceTimeoutMs,
      heartbeatInterval: this.opts.heartbeatIntervalMs,
      maxWaitTimeInMs: this.opts.maxWaitTimeMs,
      allowAutoTopicCreation: false,
      // Retries keep the same group member through a broker restart (a crash would rejoin as a new
      // member, which waits for the old one's session to time out); at most 1 s apart, so the fetch
      // loop resumes within ~1 s of the broker answering again. ~25 s of outage before it crashes.
      retry: { retries: 30, initialRetryTime: 200, maxRetryTime: 1_000 },
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
        // KAFKA_CONCURRENT_PARTITIONS: per-user seq order holds across them (the outbox locks users' heads).
        partitionsConsumedConcurrently: Math.max(
          1,
          Math.min(this.config.partitions, this.config.partitionsConcurrently ?? 4),
        ),
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
    if (consumer !== this.consumer || this.stopping || this.isClosed()) return;
    this.logger.warn(`restarting the consumer on fresh connections: ${why}`);
    this.lifecycle(async () => {
      if (consumer !== this.consumer || this.stopping || this.isClosed()) return;
      await this.stopCurrentConsumer().catch((err: Error) =>
        this.logger.warn(`consumer stop: ${err.message}`),
      );
      await this.startConsumer();
    }).catch((err: Error) => this.scheduleStart(`consumer restart failed: ${err.message}`));
  }

  /** Starts a consumer after a pause, repeating until one runs (or we are stopping). */
  private scheduleStart(why: string, waitMs = 1_000): void {
    if (this.stopping || this.isClosed()) return;
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
    if (consumer !== this.consumer || this.stopping || this.isClosed()) {
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
    if (batch.messages.length > 0) this.reportLag(partition, batch.highWatermark, batch.messages[0].offset);
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
          await this.deadLetters.writeMalformed(batch.topic, partition, run.malformed);
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
        if (isRebalanceError(err)) throw err; // kafkajs rejoins; the run comes again
        this.retryLater(payload, run, `offset commit failed: ${(err as Error).message}`);
        return;
      }
      resolveOffset(last);
      this.reportLag(partition, batch.highWatermark, nextOffset(last));
      this.failures.delete(partition);
      if (r < runs.length - 1) await heartbeat();
    }
  }

  private reportLag(partition: number, highWatermark: string, next: string): void {
    if (!this.opts.onLag) return;
    try {
      this.opts.onLag(partition, partitionLag(highWatermark, next));
    } catch (err) {
      this.logger.warn(`lag callback failed: ${(err as Error).message}`);
    }
  }

  /** Parses a fetched batch and cuts it into runs of at most maxHandlerBatch valid messages. */
  private splitBatch(batch: Batch): Run<T>[] {
    const runs: Run<T>[] = [];
    let current: Run<T> | null = null;
    for (const record of batch.messages) {
      let parsed: unknown;
      let valid = false;
      let skipped = false;
      try {
        parsed = record.value ? JSON.parse(record.value.toString('utf8')) : undefined;
        valid = this.filter.accept(parsed);
        skipped = !valid && this.filter.skip(parsed);
      } catch {
        valid = false;
      }
      if (!current || (valid && current.messages.length >= this.opts.maxHandlerBatch)) {
        current = { messages: [], malformed: [], firstOffset: record.offset, lastOffset: record.offset };
        runs.push(current);
      }
      const raw = record.value ? record.value.toString('utf8') : null;
      if (valid) {
        current.messages.push(parsed as T);
        this.deadLetters.remember(parsed as T, raw!, record.offset);
      } else if (skipped) {
        // A kind written for other readers of the stream (e.g. presence): not for this consumer.
      } else {
        current.malformed.push({ key: record.key, value: raw, offset: record.offset });
        this.logger.warn(
          `malformed record at ${batch.topic}[${batch.partition}]@${record.offset} (not a bus record): ${this.filter.deadLettersMalformed ? `moved to ${this.config.dlqTopic}` : 'skipped'}`,
        );
      }
      current.lastOffset = record.offset;
    }
    return runs;
  }

  /** Runs the handler, heartbeating meanwhile so a slow batch does not cost the group membership. */
  private async callHandler(
    batch: { partition: number; messages: T[] },
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
  private retryLater(payload: EachBatchPayload, run: Run<T>, why: string): void {
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
}
