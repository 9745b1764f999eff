import { FactoryProvider } from '@nestjs/common';
import { Config } from '../config/config.module';
import { MemoryBusDriver } from './drivers/memory-bus.driver';
import { MessageBus } from './message-bus';

export const busFactory: FactoryProvider<MessageBus> = {
  provide: MessageBus,
  inject: [Config],
  useFactory: (config: Config): MessageBus => {
    switch (config.engines.bus) {
      case 'memory':
        return new MemoryBusDriver(config.kafka.partitions);
      default:
        throw new Error(`bus engine ${config.engines.bus} is not available in this build`);
    }
  },
};
