import { FactoryProvider } from '@nestjs/common';
import { Config } from '../config/config.module';
import { RedisConnections, requireRedis } from '../redis/redis.module';
import { MemoryChannelDriver } from './drivers/memory-channel.driver';
import { MemoryDedupeDriver } from './drivers/memory-dedupe.driver';
import { MemorySessionDriver } from './drivers/memory-session.driver';
import { RedisChannelDriver } from './drivers/redis-channel.driver';
import { RedisDedupeDriver } from './drivers/redis-dedupe.driver';
import { RedisSessionDriver } from './drivers/redis-session.driver';
import { NodeChannel } from './node-channel';
import { SendDedupe } from './send-dedupe';
import { SessionMap } from './session-map';

export const sessionMapFactory: FactoryProvider<SessionMap> = {
  provide: SessionMap,
  inject: [Config, { token: RedisConnections, optional: true }],
  useFactory: (config: Config, redis?: RedisConnections): SessionMap => {
    switch (config.engines.sessions) {
      case 'memory':
        return new MemorySessionDriver(config.sessionTtlMs);
      case 'redis':
        return new RedisSessionDriver(
          requireRedis(redis, 'SESSIONS=redis (session map)'),
          config.sessionTtlMs,
        );
      default:
        throw new Error(`session engine ${config.engines.sessions} is not available in this build`);
    }
  },
};

export const nodeChannelFactory: FactoryProvider<NodeChannel> = {
  provide: NodeChannel,
  inject: [Config, { token: RedisConnections, optional: true }],
  useFactory: (config: Config, redis?: RedisConnections): NodeChannel => {
    switch (config.engines.sessions) {
      case 'memory':
        return new MemoryChannelDriver();
      case 'redis':
        return new RedisChannelDriver(requireRedis(redis, 'SESSIONS=redis (node channels)'));
      default:
        throw new Error(`session engine ${config.engines.sessions} is not available in this build`);
    }
  },
};

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
