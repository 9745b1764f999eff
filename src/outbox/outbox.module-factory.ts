import { FactoryProvider } from '@nestjs/common';
import { Config } from '../config/config.module';
import { MemoryOutboxDriver } from './drivers/memory-outbox.driver';
import { OutboxStore } from './outbox.store';

export const outboxFactory: FactoryProvider<OutboxStore> = {
  provide: OutboxStore,
  inject: [Config],
  useFactory: (config: Config): OutboxStore => {
    switch (config.engines.outbox) {
      case 'memory':
        return new MemoryOutboxDriver(config.outbox.retentionSec * 1000);
      default:
        throw new Error(`outbox engine ${config.engines.outbox} is not available in this build`);
    }
  },
};
