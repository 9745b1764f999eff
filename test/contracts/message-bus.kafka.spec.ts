import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { Logger } from '@nestjs/common';
import { KafkaBusConfig, KafkaBusDriver } from '../../src/bus/drivers/kafka-bus.driver';
import { DeadLetter, MessageBus } from '../../src/bus/message-bus';
import { waitFor } from '../support/wait-for';
import { messageBusContract } from './message-bus.contract';

/**
 * The MessageBus contract on KafkaBusDriver against the broker of scripts/infra.sh (engines project
 * globalSetup). Every bus gets its own topic, dead-letter topic and consumer group, deleted at the end.
 */
const BROKER = process.env.KAFKA_BROKERS ?? '127.0.0.1:19092';

jest.setTimeout(90_000);

messageBusContract('kafka', () => {
  Logger.overrideLogger(['error']);
  const kafka = new Kafka({ clientId: 'relay-contract', brokers: [BROKER], logLevel: logLevel.NOTHING });
  const configs = new Map<MessageBus, KafkaBusConfig>();
  const drivers: KafkaBusDriver[] = [];

  async function open(config: KafkaBusConfig): Promise<KafkaBusDriver> {
    const bus = new KafkaBusDriver(config, { retryMinMs: 100, retryMaxMs: 1_000 });
    drivers.push(bus);
    configs.set(bus, config);
    await bus.init();
    return bus;
  }

  return {
    create: () => {
      const run = `relay-contract-${randomUUID()}`;
      return open({
        brokers: [BROKER],
        clientId: 'relay-contract',
        topic: run,
        groupId: run,
        dlqTopic: `${run}.dlq`,
        partitions: 4,
        replicationFactor: 1,
        retentionHours: 24,
      });
    },
    sameGroup: (bus) => open(configs.get(bus)!),
    deadLetters: async (bus, n) => {
      const consumer = kafka.consumer({ groupId: `relay-contract-read-${randomUUID()}` });
      const kept: DeadLetter[] = [];
      await consumer.connect();
      try {
        await consumer.subscribe({ topics: [configs.get(bus)!.dlqTopic], fromBeginning: true });
        await consumer.run({
          eachMessage: async ({ message }) => {
            const {
              message: m,
              reason,
              partition,
              at,
            } = JSON.parse(message.value!.toString('utf8')) as DeadLetter;
            kept.push({ message: m, reason, partition, at });
          },
        });
        await waitFor(() => kept.length >= n, 20_000, `${n} dead letters`);
      } finally {
        await consumer.disconnect();
      }
      return kept.slice(0, n);
    },
    deliveryTimeoutMs: 30_000,
    dispose: async () => {
      await Promise.allSettled(drivers.map((d) => d.close()));
      const admin = kafka.admin();
      await admin.connect();
      const existing = new Set(await admin.listTopics());
      const ours = [...new Set([...configs.values()].flatMap((c) => [c.topic, c.dlqTopic]))].filter((t) =>
        existing.has(t),
      );
      if (ours.length > 0) await admin.deleteTopics({ topics: ours }).catch(() => undefined);
      await admin.disconnect();
    },
  };
});
