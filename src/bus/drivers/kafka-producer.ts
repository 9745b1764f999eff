import { Kafka, Partitioners, Producer } from 'kafkajs';
import { Batcher } from '../../common/batcher';
import { settledWithin, withTimeout } from '../../common/deadline';
import { AppConfig } from '../../config/app-config';
import { streamKeyOf } from '../../protocol/stream-records';
import type { PublishedRecord } from '../message-bus';
import { ClientSlot } from './kafka-client-slot';

/**
 * The producing side of the Kafka bus (every role that publishes): ingress publishes and dead-letter
 * writes, both on the producer of the shared ClientSlot.
 *
 * One producer, acks=all, maxInFlightRequests=1, not idempotent; concurrent `publish` calls are
 * coalesced by a Batcher into one produce request at a time, each caller settling with the broker's
 * answer for the request that carried its message. Key = conversation_id (Java-compatible murmur2
 * partitioner), value = the whole BusRecord as JSON.
 *
 * Order invariant: nothing is sent after a message whose publish failed (see failedThrough); after any
 * failed produce the producer is replaced by a fresh one (kafkajs keeps dead sockets).
 */

export type KafkaProducerConfig = Pick<AppConfig['kafka'], 'topic' | 'dlqTopic'>;

/** The KafkaBusOptions this side reads. */
export interface KafkaProducerOptions {
  publishTimeoutMs: number;
  ackTimeoutMs: number;
  maxPublishBatch: number;
  maxPublishBytes: number;
}

interface PendingPublish {
  message: PublishedRecord;
  /** Partition key: the conversation (presence records: the user). */
  key: string;
  value: string;
  bytes: number;
  /** Set when the caller gave up (publish timed out): not sent if its flush has not started yet. */
  abandoned: boolean;
  /** Publish order; see failedThrough. */
  seq: number;
}

/** Per-item outcome of a flush: null = acknowledged by the broker. */
type PublishOutcome = Error | null;

export function createProducer(kafka: Kafka): Producer {
  return kafka.producer({
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

export class KafkaProducer {
  private readonly batcher: Batcher<PendingPublish, PublishOutcome>;
  private lastFlush: Promise<unknown> = Promise.resolve();
  private publishSeq = 0;
  /**
   * Every publish with seq <= failedThrough that was not yet sent fails without being sent: when a
   * produce request fails, the messages queued behind it (the same client's next frames among them)
   * must not overtake it into the log; they fail too and the clients retry them in order.
   */
  private failedThrough = 0;

  constructor(
    private readonly producer: ClientSlot<Producer>,
    private readonly config: KafkaProducerConfig,
    private readonly opts: KafkaProducerOptions,
    private readonly isClosed: () => boolean,
  ) {
    // Eager: at low load a publish goes out at the end of its tick, not one event-loop turn later.
    this.batcher = new Batcher((items) => this.flush(items), opts.maxPublishBatch, true);
  }

  /** Let a produce request in flight settle (bounded by publishTimeoutMs); true if it did. */
  settled(): Promise<boolean> {
    return settledWithin(this.lastFlush, this.opts.publishTimeoutMs);
  }

  /** A flush failed: fail whatever was published until now and is still queued, then reconnect. */
  private publishFailed(producer: Producer): void {
    this.failedThrough = this.publishSeq;
    this.producer.replace(producer);
  }

  async publish(message: PublishedRecord): Promise<void> {
    if (this.isClosed()) throw new Error('kafka bus is closed');
    const value = JSON.stringify(message);
    const key = streamKeyOf(message);
    const item: PendingPublish = {
      message,
      key,
      value,
      bytes: Buffer.byteLength(value) + Buffer.byteLength(key) + 80,
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
                  key: items[i].key,
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

  /**
   * One produce request to the dead-letter topic, acks=all, bounded by publishTimeoutMs. It goes
   * straight to the current producer, not through the ingress Batcher: dead letters are not ingress
   * publishes, take no part in their order (failedThrough) and must not wait behind them. A failure
   * replaces the producer like a failed publish does (kafkajs keeps dead sockets); an ingress request
   * in flight on the old producer then fails and marks failedThrough itself, so ingress order holds.
   */
  async produceDeadLetters(messages: { key: string | Buffer | null; value: string }[]): Promise<void> {
    if (this.isClosed()) throw new Error('kafka bus is closed');
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
      if (!this.isClosed()) this.producer.replace(producer);
      throw new Error(`dead-letter write to ${this.config.dlqTopic} failed: ${(err as Error).message}`);
    }
  }
}
