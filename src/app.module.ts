import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from './config/app-config';
import { ConfigModule } from './config/config.module';
import { ConsoleModule } from './console/console.module';
import { DatabaseModule } from './database/database.module';
import { RedisModule } from './redis/redis.module';
import { DirectoryModule } from './directory/directory.module';
import { GatewayModule } from './gateway/gateway.module';
import { HealthModule } from './health/health.module';
import { NodeStatusModule } from './health/node-status';
import { MetricsModule } from './metrics/metrics.module';
import { PresenceModule } from './presence/presence.module';
import { RouterModule } from './router/router.module';
import { TracingShutdown } from './common/tracing';
import { PublishModule } from './publish/publish.module';
import { WebhooksModule } from './webhooks/webhooks.module';

/** The roles decide which modules exist at all: a router-only process has no WebSocket code loaded. */
@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        ...(config.engines.sessions === 'redis' ? [RedisModule.forRoot()] : []),
        ...(config.engines.outbox === 'mysql' ? [DatabaseModule.forRoot()] : []),
        MetricsModule,
        NodeStatusModule,
        HealthModule,
        DirectoryModule,
        PresenceModule, // GET /v1/presence on every role, like the directory API
        ...(config.roles.has('gateway') ? [GatewayModule] : []),
        ...(config.roles.has('router') ? [RouterModule] : []),
        // Not loaded at all when off: /console is then a plain 404.
        ...(config.roles.has('gateway') && config.console.enabled ? [ConsoleModule] : []),
        // Backends in the loop: the publish API is a way into ingress; webhooks consume the stream.
        ...(config.roles.has('gateway') ? [PublishModule] : []),
        ...(config.roles.has('router') && config.webhooks.urls.length > 0 ? [WebhooksModule] : []),
      ],
      providers: config.otel ? [TracingShutdown] : [],
    };
  }
}
