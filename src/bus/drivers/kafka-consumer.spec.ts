import { EachBatchPayload, Kafka } from 'kafkajs';
import { BatchHandler } from '../message-bus';
import { KafkaConsumer, KafkaConsumerOptions, partitionLag } from './kafka-consumer';

const OPTS: KafkaConsumerOptions = {
  maxHandlerBatch: 2,
  sessionTimeoutMs: 10_000,
  rebalanceTimeoutMs: 10_000,
  heartbeatIntervalMs: 1_000,
  maxWaitTimeMs: 100,
  retryMinMs: 10,
  retryMaxMs: 100,
};

const record = (offset: number) => ({
  offset: String(offset),
  key: null,
  value: Buffer.from(
    JSON.stringify({ id: `m${offset}`, conversation_id: 'c', from: 'a', ts: 1, body: 1, ref: `r${offset}` }),
  ),
});

/** Drives the consumer's eachBatch with a fetched batch, as kafkajs would, without a broker. */
function consumerWithLag(handler: BatchHandler) {
  const lags: [number, number][] = [];
  const consumer = new KafkaConsumer(
    {} as Kafka,
    { topic: 't', groupId: 'g', dlqTopic: 'd', partitions: 4 },
    { ...OPTS, onLag: (p, lag) => lags.push([p, lag]) },
    { remember: () => undefined, writeMalformed: async () => undefined },
    () => false,
  );
  // The handler consume() would install (consume itself would start a real kafkajs consumer).
  (consumer as unknown as { handler: BatchHandler }).handler = handler;
  const eachBatch = (payload: EachBatchPayload) =>
    (consumer as unknown as { eachBatch(p: EachBatchPayload): Promise<void> }).eachBatch(payload);
  return { lags, eachBatch };
}

function payload(partition: number, highWatermark: string, offsets: number[]): EachBatchPayload {
  return {
    batch: {
      topic: 't',
      partition,
      highWatermark,
      messages: offsets.map(record),
      lastOffset: () => String(offsets[offsets.length - 1]),
    },
    isRunning: () => true,
    isStale: () => false,
    heartbeat: async () => undefined,
    resolveOffset: () => undefined,
    commitOffsetsIfNecessary: async () => undefined,
    pause: () => () => undefined,
  } as unknown as EachBatchPayload;
}

describe('KafkaConsumer lag', () => {
  it('is the high watermark minus the next offset, never negative', () => {
    expect(partitionLag('110', '100')).toBe(10);
    expect(partitionLag('110', '110')).toBe(0);
    expect(partitionLag('-1', '0')).toBe(0);
  });

  it('reports a partition lag when a batch arrives and after each committed run', async () => {
    const { lags, eachBatch } = consumerWithLag(async () => undefined);
    // 5 records at 100..104 of a partition whose log ends at 110; runs of 2: commits at 102, 104, 105.
    await eachBatch(payload(3, '110', [100, 101, 102, 103, 104]));
    expect(lags).toEqual([
      [3, 10],
      [3, 8],
      [3, 6],
      [3, 5],
    ]);
  });

  it('reports no progress for a run whose handler failed (it is redelivered)', async () => {
    const { lags, eachBatch } = consumerWithLag(() => Promise.reject(new Error('down')));
    await eachBatch(payload(0, '7', [5, 6]));
    expect(lags).toEqual([[0, 2]]);
  });
});
