import { FactoryProvider } from '@nestjs/common';
import { Config } from '../config/config.module';
import { KafkaBusDriver } from './drivers/kafka-bus.driver';
import { MemoryBusDriver } from './drivers/memory-bus.driver';
import { MessageBus } from './message-bus';

export const busFactory: FactoryProvider<MessageBus> = {
  provide: MessageBus,
  inject: [Config],
  useFactory: async (config: Config): Promise<MessageBus> => {
    switch (config.engines.bus) {
      case 'memory':
        return new MemoryBusDriver(config.kafka.partitions);
      case 'kafka': {
        // Topic exists (created if missing) and the producer is connected before anything can publish.
        // The consumer is created only by consume() (router role): a gateway never joins the group.
        const bus = new KafkaBusDriver(config.kafka);
        try {
          await bus.init();
        } catch (err) {
          await bus.close().catch(() => undefined);
          throw new Error(
            `kafka bus could not start (brokers ${config.kafka.brokers.join(',')}): ${(err as Error).message}`,
          );
        }
        return bus;
      }
      default:
        throw new Error(`bus engine ${config.engines.bus} is not available in this build`);
    }
  },
};
