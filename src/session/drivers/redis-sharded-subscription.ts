import { Logger } from '@nestjs/common';
import type Redis from 'ioredis';
import { RedisConnections, closeRedis } from '../../redis/redis.module';

/** Pause between attempts to find and subscribe at the channel's master while it fails over. */
const RETRY_MS = 250;
/** How long the first subscription may take (the cluster client may still be connecting). */
const START_TIMEOUT_MS = 15_000;

/**
 * One node channel on Redis Cluster sharded pub/sub: SSUBSCRIBE on a plain connection to the master
 * that owns the channel's slot (sharded messages are published only there and to its replicas).
 *
 * Invariants: at most one connection is current; when it ends (master killed) or the server drops
 * the subscription (slot moved: unsolicited SUNSUBSCRIBE, surfaced by ioredis as 'moved'), the owner
 * is looked up again and a new connection subscribes; only once its SSUBSCRIBE is answered does
 * `onResubscribed` run, so the outbox refill it triggers cannot miss a push published in between.
 */
export class ShardedSubscription {
  private readonly logger = new Logger(ShardedSubscription.name);
  private client: Redis | null = null;
  private closed = false;
  private reconnecting = false;

  constructor(
    private readonly connections: RedisConnections,
    readonly channel: string,
    private readonly onMessage: (message: string) => void,
    private readonly onResubscribed: () => void,
  ) {}

  /**
   * First subscription: retried while the cluster client is still learning the slot map (at boot),
   * then fails with the reason if the channel's master cannot be reached within START_TIMEOUT_MS.
   */
  async start(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      try {
        await this.connect();
        return;
      } catch (err) {
        if (this.closed || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }

  private async connect(): Promise<void> {
    const owner = await this.connections.masterOf(this.channel);
    const client = this.connections.createNodeConnection('ssub', owner);
    client.on('smessage', (ch: string, message: string) => {
      // Runs in the client's parser callback: nothing may escape.
      try {
        if (ch === this.channel) this.onMessage(message);
      } catch (err) {
        this.logger.error(`node channel message handling failed: ${(err as Error).message}`);
      }
    });
    const lost = (why: string) => {
      if (this.client !== client) return;
      this.client = null;
      client.disconnect();
      this.resubscribe(why);
    };
    client.once('end', () => lost(`connection to ${owner} ended`));
    client.on('moved', () => lost(`slot of ${this.channel} moved away from ${owner}`));
    try {
      await client.ssubscribe(this.channel);
    } catch (err) {
      client.disconnect();
      throw new Error(`SSUBSCRIBE ${this.channel} at ${owner} failed: ${(err as Error).message}`);
    }
    if (this.closed) {
      client.disconnect();
      return;
    }
    this.client = client;
  }

  private resubscribe(why: string): void {
    if (this.closed || this.reconnecting) return;
    this.reconnecting = true;
    this.logger.warn(`node channel ${this.channel}: ${why}; resubscribing at the slot's master`);
    const attempt = async (): Promise<void> => {
      while (!this.closed) {
        try {
          await this.connect();
          this.reconnecting = false;
          if (this.closed) return;
          this.logger.warn(
            `node channel ${this.channel} resubscribed; pushes sent meanwhile are lost, resyncing`,
          );
          try {
            this.onResubscribed();
          } catch (err) {
            this.logger.error(`resync handler failed: ${(err as Error).message}`);
          }
          return;
        } catch (err) {
          this.logger.warn(`node channel ${this.channel}: ${(err as Error).message}; retrying`);
          await new Promise((r) => setTimeout(r, RETRY_MS));
        }
      }
      this.reconnecting = false;
    };
    attempt().catch((err: Error) => this.logger.error(`resubscribe failed: ${err.message}`));
  }

  async ping(): Promise<void> {
    const client = this.client;
    if (!client || client.status !== 'ready')
      throw new Error(`sharded subscriber of ${this.channel} is not connected`);
    await client.ping();
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = null;
    if (!client) return;
    await client.sunsubscribe(this.channel).catch(() => undefined);
    await closeRedis(client);
  }
}
