import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { GroupSubscription, MessageBus } from '../bus/message-bus';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { WebhookClient } from './webhook-client';
import { WebhookEndpoint } from './webhook-endpoint';

/**
 * Starts one consumer group per configured endpoint (`<KAFKA_GROUP_ID>.<endpoint name>`), so a slow or
 * dead endpoint holds back only its own group: the router's group and the other endpoints' move on.
 * Delivery state is the group's committed offsets: on Kafka it survives restarts and a paused
 * endpoint resumes where it stopped; the embedded engine keeps it in memory (lost with the process,
 * like the stream itself).
 */
@Injectable()
export class WebhooksService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('Webhooks');
  private readonly endpoints: WebhookEndpoint[];
  private readonly subscriptions: GroupSubscription[] = [];

  constructor(
    private readonly bus: MessageBus,
    private readonly config: Config,
    client: WebhookClient,
    metrics: MetricsService,
  ) {
    const w = config.webhooks;
    this.endpoints = w.urls.map((url) => new WebhookEndpoint(url, w, client, metrics));
  }

  async onApplicationBootstrap(): Promise<void> {
    for (const endpoint of this.endpoints) {
      const group = `${this.config.kafka.groupId}.${endpoint.name}`;
      this.subscriptions.push(await this.bus.consumeAsGroup(group, (batch) => endpoint.handle(batch)));
      this.logger.log(`endpoint ${endpoint.name} consuming as group ${group}`);
    }
  }

  /** Interrupts retries first (their batches stay uncommitted), then leaves the groups. */
  async beforeApplicationShutdown(): Promise<void> {
    for (const e of this.endpoints) e.stop();
    await Promise.allSettled(this.subscriptions.splice(0).map((s) => s.stop()));
  }
}
