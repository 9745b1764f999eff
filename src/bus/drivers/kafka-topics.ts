import { Logger } from '@nestjs/common';
import { Admin, ConfigResourceTypes, Kafka } from 'kafkajs';
import { AppConfig } from '../../config/app-config';
import { ClientSlot } from './kafka-client-slot';
import { describeKafkaError, isTopicAlreadyExists } from './kafka-errors';

/**
 * The admin side of the Kafka bus: creates and checks the ingress and dead-letter topics at startup
 * (waiting for their leaders) and answers `ping` with a metadata request. It uses the admin client of
 * the shared ClientSlot, replacing it after a failed ping.
 */

export type KafkaTopicsConfig = Pick<
  AppConfig['kafka'],
  'topic' | 'dlqTopic' | 'partitions' | 'replicationFactor' | 'retentionHours'
>;

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function createAdmin(kafka: Kafka): Admin {
  return kafka.admin({ retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2_000 } });
}

export class KafkaTopics {
  private readonly logger = new Logger('KafkaBus');

  constructor(
    private readonly admin: ClientSlot<Admin>,
    private readonly config: KafkaTopicsConfig,
    private readonly opts: { pingTimeoutMs: number },
    private readonly isClosed: () => boolean,
  ) {}

  /** Same partitions and retention for both topics: a dead letter lives at least as long as a message. */
  async ensureTopic(topic: string): Promise<void> {
    const { partitions, replicationFactor } = this.config;
    const retentionMs = Math.max(24, this.config.retentionHours) * 3_600_000;
    let created = false;
    // Check first: on every start but the first the topic exists, and kafkajs logs a failed
    // CreateTopics as an error even when we handle TOPIC_ALREADY_EXISTS.
    const exists = (await this.admin.current.listTopics()).includes(topic);
    try {
      if (!exists)
        // Leaders are awaited below by our own loop: kafkajs's waitForLeaders gives up with
        // UNKNOWN_TOPIC_OR_PARTITION when a busy broker takes a moment to host the new partitions.
        created = await this.admin.current.createTopics({
          waitForLeaders: false,
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

  /** The ingress topic's metadata, within pingTimeoutMs. */
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
      // Fresh connections for the next ping (see the driver's retire): a zombie socket would fail every ping.
      if (!this.isClosed()) this.admin.replace(admin);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}
