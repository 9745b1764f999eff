import { Logger } from '@nestjs/common';
import { BusRecord } from '../../protocol/bus-record';
import { IngressMessage } from '../../protocol/envelope';
import { isStreamOnlyKind, RawStreamRecord, streamKeyOf } from '../../protocol/stream-records';
import {
  BatchHandler,
  DeadLetter,
  GroupSubscription,
  MessageBus,
  OtherStreamRecord,
  partitionFor,
  PublishedRecord,
  RecordBatch,
} from '../message-bus';

interface Partition {
  /** Retained records: from `base` on, until every group has committed past them. */
  log: PublishedRecord[];
  /** Offset of log[0]. */
  base: number;
}

/** One consumer group: its committed offset and its waiting loop per partition. */
interface Group {
  next: number[];
  wake: ((() => void) | null)[];
  stopping: boolean;
  loops: Promise<void>[];
}

const ROUTER_GROUP = '';

/**
 * In-process bus with the semantics the router relies on from Kafka: keyed partitions, per-partition
 * order, commit after the handler resolved, redelivery of the whole batch when it throws; and consumer
 * groups with their own offsets (the router's and those of consumeAsGroup).
 *
 * Invariants: per group, one consumer loop per partition; a loop never starts batch N+1 before batch
 * N's handler resolved; a record leaves a partition's log only once every group that ever consumed
 * committed past it (a stopped group keeps its offsets and holds the log: memory grows while it is
 * stopped). Nothing survives the process.
 */
export class MemoryBusDriver extends MessageBus {
  private readonly logger = new Logger('MemoryBus');
  private readonly partitions: Partition[];
  private readonly groups = new Map<string, Group>();
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
    this.partitions = Array.from({ length: partitions }, () => ({ log: [], base: 0 }));
    // The router's group exists from the start: whatever is published before the router consumes
    // (or while it is stopped) waits for it, however fast other groups commit.
    this.groups.set(ROUTER_GROUP, this.newGroup());
  }

  private newGroup(): Group {
    return {
      // A new group starts at the oldest retained record.
      next: this.partitions.map((p) => p.base),
      wake: this.partitions.map(() => null),
      stopping: false,
      loops: [],
    };
  }

  /** Test hook: simulate an unreachable broker (publish fails like a broker timeout would). */
  setAvailable(available: boolean): void {
    this.available = available;
  }

  publish(message: IngressMessage): Promise<void> {
    return this.append(message);
  }

  publishRecord(record: OtherStreamRecord): Promise<void> {
    return this.append(record);
  }

  publishReceipt(record: PublishedRecord): Promise<void> {
    return this.append(record);
  }

  private async append(message: PublishedRecord): Promise<void> {
    if (!this.available) throw new Error('memory bus unavailable');
    const index = partitionFor(streamKeyOf(message), this.partitions.length);
    this.partitions[index].log.push(message);
    for (const g of this.groups.values()) g.wake[index]?.();
  }

  async consume(handler: BatchHandler): Promise<void> {
    this.start(ROUTER_GROUP, async (partition, records) => {
      // Stream-only kinds (presence) are not the router's: committed past.
      const messages = records.filter((r) => !isStreamOnlyKind(r)) as BusRecord[];
      if (messages.length > 0) await handler({ partition, messages });
    });
  }

  async consumeAsGroup(
    groupId: string,
    handler: (batch: RecordBatch) => Promise<void>,
  ): Promise<GroupSubscription> {
    if (groupId === ROUTER_GROUP) throw new Error('group id must not be empty');
    this.start(groupId, (partition, records) =>
      handler({ partition, records: records as unknown as RawStreamRecord[] }),
    );
    return { stop: () => this.stopGroup(groupId) };
  }

  private start(groupId: string, handle: (partition: number, records: PublishedRecord[]) => Promise<void>) {
    let g = this.groups.get(groupId);
    if (g && g.loops.length > 0 && !g.stopping) throw new Error(`group ${groupId} is already consuming`);
    if (!g) {
      g = this.newGroup();
      this.groups.set(groupId, g);
    }
    g.stopping = false;
    const group = g;
    group.loops = this.partitions.map((_, i) => this.loop(group, i, handle));
  }

  private async loop(
    g: Group,
    index: number,
    handle: (partition: number, records: PublishedRecord[]) => Promise<void>,
  ): Promise<void> {
    const p = this.partitions[index];
    while (!g.stopping) {
      const from = g.next[index] - p.base;
      if (from >= p.log.length) {
        await new Promise<void>((resolve) => (g.wake[index] = resolve));
        g.wake[index] = null;
        continue;
      }
      const records = p.log.slice(from, from + this.maxBatch);
      try {
        await handle(index, records);
        g.next[index] += records.length; // commit
        this.trim(index);
      } catch (err) {
        this.logger.warn(`batch on partition ${index} failed, redelivering: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, this.retryMs));
      }
    }
  }

  /** Drops the records every group has committed. */
  private trim(index: number): void {
    const p = this.partitions[index];
    let min = Infinity;
    for (const g of this.groups.values()) min = Math.min(min, g.next[index]);
    const drop = min - p.base;
    if (drop > 0) {
      p.log.splice(0, drop);
      p.base = min;
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

  private async stopGroup(groupId: string): Promise<void> {
    const g = this.groups.get(groupId);
    if (!g) return;
    g.stopping = true;
    for (const wake of g.wake) wake?.();
    await Promise.all(g.loops);
    g.loops = [];
  }

  async stopConsuming(): Promise<void> {
    await this.stopGroup(ROUTER_GROUP);
  }

  async ping(): Promise<void> {
    if (!this.available) throw new Error('memory bus unavailable');
  }

  async close(): Promise<void> {
    await Promise.all([...this.groups.keys()].map((id) => this.stopGroup(id)));
  }
}
