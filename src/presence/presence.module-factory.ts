import { FactoryProvider } from '@nestjs/common';
import { Config } from '../config/config.module';
import { RedisConnections, requireRedis } from '../redis/redis.module';
import { MemoryPresenceDriver } from './drivers/memory-presence.driver';
import { RedisPresenceDriver } from './drivers/redis-presence.driver';
import { PresenceStore } from './presence.store';

/** Presence lives next to the session map (`SESSIONS`): every gateway must see the same store. */
export const presenceStoreFactory: FactoryProvider<PresenceStore> = {
  provide: PresenceStore,
  inject: [Config, { token: RedisConnections, optional: true }],
  useFactory: (config: Config, redis?: RedisConnections): PresenceStore => {
    switch (config.engines.sessions) {
      case 'memory':
        return new MemoryPresenceDriver(config.sessionTtlMs);
      case 'redis':
        return new RedisPresenceDriver(requireRedis(redis, 'SESSIONS=redis (presence)'), config.sessionTtlMs);
      default:
        throw new Error(`presence for ${config.engines.sessions} is not available in this build`);
    }
  },
};
