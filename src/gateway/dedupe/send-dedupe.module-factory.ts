import { FactoryProvider } from '@nestjs/common';
import { Config } from '../../config/config.module';
import { RedisConnections, requireRedis } from '../../redis/redis.module';
import { MemoryDedupeDriver } from './memory-dedupe.driver';
import { RedisDedupeDriver } from './redis-dedupe.driver';
import { SendDedupe } from './send-dedupe';

/** Dedupe records live next to the session map (Redis in production) so every gateway sees them. */
export const sendDedupeFactory: FactoryProvider<SendDedupe> = {
  provide: SendDedupe,
  inject: [Config, { token: RedisConnections, optional: true }],
  useFactory: (config: Config, redis?: RedisConnections): SendDedupe => {
    switch (config.engines.sessions) {
      case 'memory':
        return new MemoryDedupeDriver(config.gateway.dedupeWindowMs);
      case 'redis':
        return new RedisDedupeDriver(
          requireRedis(redis, 'SESSIONS=redis (send dedupe)'),
          config.gateway.dedupeWindowMs,
        );
      default:
        throw new Error(`dedupe for ${config.engines.sessions} is not available in this build`);
    }
  },
};
