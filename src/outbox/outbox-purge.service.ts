import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Config } from '../config/config.module';
import { OutboxStore } from './outbox.store';

/**
 * Deletes expired deliveries in bounded chunks so one purge never holds locks for long. The router's
 * chore: RouterModule provides it, so gateway-only nodes do not have it at all.
 */
@Injectable()
export class OutboxPurgeService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(OutboxPurgeService.name);
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | null = null;

  constructor(
    private readonly config: Config,
    private readonly outbox: OutboxStore,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => {
      if (!this.running) this.running = this.purge().finally(() => (this.running = null));
    }, this.config.outbox.purgeIntervalMs);
    this.timer.unref();
  }

  /** Purges until a chunk comes back short; returns the number of deliveries removed. */
  async purge(maxChunks = 100): Promise<number> {
    let total = 0;
    try {
      for (let i = 0; i < maxChunks; i++) {
        const n = await this.outbox.purgeExpired(this.config.outbox.purgeChunk);
        total += n;
        if (n < this.config.outbox.purgeChunk) break;
      }
      if (total > 0) this.logger.log(`purged ${total} expired deliveries`);
    } catch (err) {
      this.logger.warn(`outbox purge failed: ${(err as Error).message}`);
    }
    return total;
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
