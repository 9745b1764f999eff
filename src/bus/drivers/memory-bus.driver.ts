import { Logger } from '@nestjs/common';
import { BusRecord, PublishedRecord } from '../../protocol/bus-record';
import { BatchHandler, DeadLetter, MessageBus, partitionFor } from '../message-bus';

interface Partition {
  log: BusRecord[]; // uncommitted tail; committed entries are dropped (no replay beyond commit needed in-process)
  wake: (() => void) | null;
}

/**
 * In-process bus with the semantics the router relies on from Kafka: keyed partitions, per-partition
 * order, commit after the handler resolved, redelivery of the whole batch when it throws.
 *
 * Invariants: one consumer loop per partition; a loop never starts batch N+1 before batch N's handler
 * resolved; entries leave a partition's log only when committed.
 */
export class MemoryBusDriver extends MessageBus {
  private readonly logger = new Logger('MemoryBus');
  private readonly partitions: Partition[];
  private loops: Promise<void>[] = [];
  private stopping = false;
  private available = true;
  /** Quarantined messages, oldest first; only the newest `maxDeadLetters` are kept (memory is bounded). */
  private readonly dead: DeadLetter[] = [];

  constructor(
    partitions = 8,
    private readonly maxBatch = 500,
    private readonly retryMs = 200,
    private readonly maxDeadLetters = 10_000,
  ) {
    super();
    this.partitions = Array.from({ length: partitions }, () => ({ log: [], wake: null }));
  }

  /** Test hook: simulate an unreachable broker (publish fails like a broker timeout would). */
  setAvailable(available: boolean): void {
    this.available = available;
  }

  publishReceipt(record: PublishedRecord): Promise<void> {
    return this.publish(record);
  }

  async publish(message: PublishedRecord): Promise<void> {
    if (!this.available) throw new Error('memory bus unavailable');
    const p = this.partitions[partitionFor(message.conversation_id, this.partitions.length)];
    p.log.push(message);
    p.wake?.();
  }

  async consume(handler: BatchHandler): Promise<void> {
    this.stopping = false;
    this.loops = this.partitions.map((p, i) => this.loop(i, p, handler));
  }

  private async loop(index: number, p: Partition, handler: BatchHandler): Promise<void> {
    while (!this.stopping) {
      if (p.log.length === 0) {
        await new Promise<void>((resolve) => (p.wake = resolve));
        p.wake = null;
        continue;
      }
      const messages = p.log.slice(0, this.maxBatch);
      try {
        await handler({ partition: index, messages });
        p.log.splice(0, messages.length); // commit
      } catch (err) {
        this.logger.warn(`batch on partition ${index} failed, redelivering: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, this.retryMs));
      }
    }
  }

  async deadLetter(message: BusRecord, reason: string, partition: number): Promise<void> {
    if (!this.available) throw new Error('memory bus unavailable');
    this.dead.push({ message, reason, partition, at: Date.now() });
    if (this.dead.length > this.maxDeadLetters) this.dead.splice(0, this.dead.length - this.maxDeadLetters);
  }

  /** The dead-letter store, oldest first (for operators and tests). */
  deadLetters(): readonly DeadLetter[] {
    return [...this.dead];
  }

  async stopConsuming(): Promise<void> {
    this.stopping = true;
    for (const p of this.partitions) p.wake?.();
    await Promise.all(this.loops);
    this.loops = [];
  }

  async ping(): Promise<void> {
    if (!this.available) throw new Error('memory bus unavailable');
  }

  async close(): Promise<void> {
    await this.stopConsuming();
  }
}
