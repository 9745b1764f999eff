import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { OutboxStore } from './outbox.store';

/**
 * Deletes expired deliveries in bounded chunks so one purge never holds locks for long. The router's
 * chore: RouterModule provides it, so gateway-only nodes do not have it at all. Each tick also
 * refreshes the outbox size gauges (`outbox_rows`, `outbox_oldest_age_seconds`) from `stats()`.
 */
@Injectable()
export class OutboxPurgeService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(OutboxPurgeService.name);
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | null = null;

  constructor(
    private readonly config: Config,
    private readonly outbox: OutboxStore,
    private readonly metrics: MetricsService,
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
    await this.refreshGauges();
    return total;
  }

  /** After a purge, so the gauges show what is really left; a failure leaves the last values. */
  async refreshGauges(): Promise<void> {
    try {
      const { rows, oldestAgeMs } = await this.outbox.stats();
      this.metrics.outboxRows.set(rows);
      this.metrics.outboxOldestAge.set((oldestAgeMs ?? 0) / 1000);
    } catch (err) {
      this.logger.warn(`outbox stats failed: ${(err as Error).message}`);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
