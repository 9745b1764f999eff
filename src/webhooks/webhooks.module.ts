import { Module } from '@nestjs/common';
import { BusModule } from '../bus/bus.module';
import { WebhookClient } from './webhook-client';
import { WebhooksService } from './webhooks.service';

/** Loaded with the router role when WEBHOOK_URLS is set (src/app.module.ts). */
@Module({
  imports: [BusModule],
  providers: [WebhookClient, WebhooksService],
})
export class WebhooksModule {}
