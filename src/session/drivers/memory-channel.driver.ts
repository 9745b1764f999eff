import { Logger } from '@nestjs/common';
import { EphemeralBatch, NodeChannel, NodeSubscriber, PushBatch } from '../node-channel';

/**
 * In-process channels (one node: the router hands its batch straight to the local gateway). A batch
 * is handed over in a microtask, after `publish` returned (never re-entrant into the router) but
 * without waiting for an event-loop turn behind every pending socket read, which at saturation is
 * most of a delivery's latency.
 */
export class MemoryChannelDriver extends NodeChannel {
  private readonly logger = new Logger(MemoryChannelDriver.name);
  private readonly subscribers = new Map<string, NodeSubscriber>();
  private own: string | null = null;

  async publish(batches: Map<string, PushBatch>): Promise<void> {
    for (const [node, batch] of batches) {
      const sub = this.subscribers.get(node);
      if (sub) queueMicrotask(() => this.deliver(sub, batch));
    }
  }

  override async publishEphemeral(batches: Map<string, EphemeralBatch>): Promise<void> {
    // One process: only our own node can be subscribed here.
    for (const [node, batch] of batches) {
      if (node === this.own) setImmediate(() => this.handOver(batch));
    }
  }

  private handOver(batch: EphemeralBatch): void {
    try {
      this.deliverEphemeral(batch);
    } catch (err) {
      this.logger.error(`ephemeral batch handler failed: ${(err as Error).message}`);
    }
  }

  /** Runs in a bare microtask: an exception here would be uncaught and end the process. */
  private deliver(sub: NodeSubscriber, batch: PushBatch): void {
    try {
      sub.onBatch(batch);
    } catch (err) {
      this.logger.error(`push batch handler failed: ${(err as Error).message}`);
    }
  }

  /** One process, one node: only our own can be subscribed here. */
  override singleNode(): string | null {
    return this.subscribers.size === 1 ? this.own : null;
  }

  async subscribe(node: string, subscriber: NodeSubscriber): Promise<void> {
    this.own = node;
    this.subscribers.set(node, subscriber);
  }

  async unsubscribe(): Promise<void> {
    if (this.own) this.subscribers.delete(this.own);
    this.own = null;
  }

  async ping(): Promise<void> {}
}
