import { Logger } from '@nestjs/common';
import { RedisClient, RedisConnections, closeRedis, execChecked } from '../../redis/redis.module';
import {
  compileWireSchema,
  deliveriesInRange,
  EPHEMERAL_BATCH_SCHEMA,
  PUSH_BATCH_SCHEMA,
} from '../../protocol/wire-schemas';
import { EphemeralBatch, NodeChannel, NodeSubscriber, PushBatch } from '../node-channel';
import { ShardedSubscription } from './redis-sharded-subscription';

/** Longest excerpt of a malformed message that goes into the log. */
const LOG_EXCERPT = 120;

interface Subscription {
  client: RedisClient;
  channel: string;
  onMessage: (channel: string, message: string) => void;
  onReady: () => void;
}

/**
 * Node channels on Redis pub/sub: `<prefix>node:{<nodeId>}`, one message (the JSON PushBatch) per node
 * per routed batch, all PUBLISHes of a batch in one pipeline on the shared command connection.
 *
 * The subscriber has its own connection. Pub/sub is at-most-once: whatever was published while that
 * connection was down is lost, so every reconnect after the first subscription ends in `onResync()`
 * (once the channel is subscribed again), and the gateway refills its connections from the outbox.
 *
 * On a Redis Cluster (REDIS_CLUSTER_NODES) the same channels use sharded pub/sub: SPUBLISH (routed by
 * the channel's slot, auto-pipelined per master) and one SSUBSCRIBE at the channel's master, which
 * follows a failover (ShardedSubscription) and resyncs the same way.
 */
export class RedisChannelDriver extends NodeChannel {
  private readonly logger = new Logger(RedisChannelDriver.name);
  private sub: Subscription | null = null;
  private sharded: ShardedSubscription | null = null;

  constructor(private readonly connections: RedisConnections) {
    super();
  }

  private channelOf(node: string): string {
    return `${this.connections.prefix}node:{${node}}`;
  }

  /** Cluster: one SPUBLISH per node; auto-pipelining sends those of one tick to a master together. */
  private async spublish(batches: Map<string, PushBatch | EphemeralBatch>): Promise<void> {
    const cmd = this.connections.command;
    const json = jsonOnce();
    await Promise.all([...batches].map(([node, batch]) => cmd.spublish(this.channelOf(node), json(batch))));
  }

  async publish(batches: Map<string, PushBatch>): Promise<void> {
    if (batches.size === 0) return;
    if (this.connections.isCluster) return this.spublish(batches);
    const p = this.connections.command.pipeline();
    const json = jsonOnce();
    for (const [node, batch] of batches) p.publish(this.channelOf(node), json(batch));
    await execChecked(p);
  }

  override async publishEphemeral(batches: Map<string, EphemeralBatch>): Promise<void> {
    if (batches.size === 0) return;
    if (this.connections.isCluster) return this.spublish(batches);
    const p = this.connections.command.pipeline();
    const json = jsonOnce();
    for (const [node, batch] of batches) p.publish(this.channelOf(node), json(batch));
    await execChecked(p);
  }

  async subscribe(node: string, subscriber: NodeSubscriber): Promise<void> {
    if (this.sub || this.sharded) throw new Error(`node channel of ${node}: already subscribed`);
    const channel = this.channelOf(node);
    if (this.connections.isCluster) {
      const sharded = new ShardedSubscription(
        this.connections,
        channel,
        (message) => this.deliver(subscriber, message),
        () => subscriber.onResync(),
      );
      this.sharded = sharded;
      try {
        await sharded.start();
      } catch (err) {
        this.sharded = null;
        await sharded.close();
        throw err;
      }
      return;
    }
    const client = this.connections.create('sub');
    // The first 'ready' is the initial connect; only those after the first SUBSCRIBE succeeded are reconnects.
    let subscribed = false;
    const sub: Subscription = {
      client,
      channel,
      // Both run in the Redis client's event callbacks: nothing may escape from them.
      onMessage: (ch, message) => {
        try {
          if (ch === channel) this.deliver(subscriber, message);
        } catch (err) {
          this.logger.error(`push batch handling failed: ${(err as Error).message}`);
        }
      },
      onReady: () => {
        if (subscribed)
          this.resync(sub, subscriber).catch((err: Error) =>
            this.logger.error(`resync after reconnect failed: ${err.message}`),
          );
      },
    };
    client.on('message', sub.onMessage);
    client.on('ready', sub.onReady);
    this.sub = sub;
    try {
      await client.subscribe(channel);
      subscribed = true;
    } catch (err) {
      this.sub = null;
      client.off('message', sub.onMessage);
      client.off('ready', sub.onReady);
      await closeRedis(client);
      throw err;
    }
  }

  /**
   * ioredis re-subscribes on its own when the connection is ready again, but only sends the command.
   * Our own SUBSCRIBE (idempotent) is answered after it, so once it resolves pushes are flowing again
   * and a refill from the outbox cannot miss anything published in between.
   */
  private async resync(sub: Subscription, subscriber: NodeSubscriber): Promise<void> {
    try {
      await sub.client.subscribe(sub.channel);
    } catch (err) {
      // The connection dropped again; the next 'ready' resyncs once more. Refill anyway: it is harmless.
      this.logger.warn(`re-subscribing to ${sub.channel} failed: ${(err as Error).message}`);
    }
    if (this.sub !== sub) return; // unsubscribed meanwhile
    this.logger.warn(`node channel ${sub.channel} reconnected; pushes sent meanwhile are lost, resyncing`);
    try {
      subscriber.onResync();
    } catch (err) {
      this.logger.error(`resync handler failed: ${(err as Error).message}`);
    }
  }

  private deliver(subscriber: NodeSubscriber, message: string): void {
    let batch: unknown;
    try {
      batch = JSON.parse(message);
    } catch {
      batch = undefined;
    }
    if (isObject(batch) && batch.kind === 'ephemeral') {
      if (!isEphemeralBatch(batch)) {
        this.logger.warn(`ignoring malformed ephemeral batch: ${message.slice(0, LOG_EXCERPT)}`);
        return;
      }
      try {
        this.deliverEphemeral(batch);
      } catch (err) {
        this.logger.error(`ephemeral batch handler failed: ${(err as Error).message}`);
      }
      return;
    }
    if (!isPushBatch(batch)) {
      this.logger.warn(`ignoring malformed push batch: ${message.slice(0, LOG_EXCERPT)}`);
      return;
    }
    try {
      subscriber.onBatch(batch);
    } catch (err) {
      // Never let a handler failure reach the Redis client's parser.
      this.logger.error(`push batch handler failed: ${(err as Error).message}`);
    }
  }

  async unsubscribe(): Promise<void> {
    const sharded = this.sharded;
    this.sharded = null;
    await sharded?.close();
    const sub = this.sub;
    if (!sub) return;
    this.sub = null;
    sub.client.off('message', sub.onMessage);
    sub.client.off('ready', sub.onReady);
    await sub.client.unsubscribe(sub.channel).catch(() => undefined);
    await closeRedis(sub.client);
  }

  /** The command connection answers and, on a gateway, so does the subscriber connection. */
  async ping(): Promise<void> {
    const sub = this.sub;
    await Promise.all([
      this.connections.command.ping(),
      this.sharded?.ping(),
      sub &&
        (sub.client.status === 'ready'
          ? sub.client.ping()
          : Promise.reject(new Error(`subscriber connection is ${sub.client.status}`))),
    ]);
  }
}

const isEphemeralBatch = compileWireSchema<EphemeralBatch>(EPHEMERAL_BATCH_SCHEMA);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

const hasPushBatchShape = compileWireSchema<PushBatch>(PUSH_BATCH_SCHEMA);

/** What the gateway relies on: the batch's shape, and every delivery points at one of its envelopes. */
function isPushBatch(v: unknown): v is PushBatch {
  return hasPushBatchShape(v) && deliveriesInRange(v);
}

/** JSON.stringify that serialises a batch sent to several nodes (a broadcast) once. */
function jsonOnce(): (batch: object) => string {
  const done = new Map<object, string>();
  return (batch) => {
    let json = done.get(batch);
    if (json === undefined) done.set(batch, (json = JSON.stringify(batch)));
    return json;
  };
}
