import { FactoryProvider } from '@nestjs/common';
import { Config } from '../config/config.module';
import { MemoryChannelDriver } from './drivers/memory-channel.driver';
import { MemorySessionDriver } from './drivers/memory-session.driver';
import { NodeChannel } from './node-channel';
import { SessionMap } from './session-map';

export const sessionMapFactory: FactoryProvider<SessionMap> = {
  provide: SessionMap,
  inject: [Config],
  useFactory: (config: Config): SessionMap => {
    switch (config.engines.sessions) {
      case 'memory':
        return new MemorySessionDriver(config.sessionTtlMs);
      default:
        throw new Error(`session engine ${config.engines.sessions} is not available in this build`);
    }
  },
};

export const nodeChannelFactory: FactoryProvider<NodeChannel> = {
  provide: NodeChannel,
  inject: [Config],
  useFactory: (config: Config): NodeChannel => {
    switch (config.engines.sessions) {
      case 'memory':
        return new MemoryChannelDriver();
      default:
        throw new Error(`session engine ${config.engines.sessions} is not available in this build`);
    }
  },
};
