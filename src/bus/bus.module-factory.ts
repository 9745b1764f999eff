import { FactoryProvider } from '@nestjs/common';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { KafkaBusDriver } from './drivers/kafka-bus.driver';
import { MemoryBusDriver } from './drivers/memory-bus.driver';
import { MessageBus } from './message-bus';

export const busFactory: FactoryProvider<MessageBus> = {
  provide: MessageBus,
  inject: [Config, MetricsService],
  useFactory: async (config: Config, metrics: MetricsService): Promise<MessageBus> => {
    switch (config.engines.bus) {
      case 'memory':
        return new MemoryBusDriver(config.kafka.partitions);
      case 'kafka': {
        // Topic exists (created if missing) and the producer is connected before anything can publish.
        // The consumer is created only by consume() (router role): a gateway never joins the group.
        // Records that are not IngressMessage JSON never reach the router: the driver dead-letters them.
        const bus = new KafkaBusDriver(config.kafka, {
          onDeadLetter: (reason) => metrics.deadLetters.inc({ reason }),
          onLag: (partition, lag) => metrics.consumerLag.set({ partition: String(partition) }, lag),
        });
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
