import { Logger } from '@nestjs/common';
import { MemoryBusDriver } from '../../src/bus/drivers/memory-bus.driver';
import { messageBusContract } from './message-bus.contract';

messageBusContract('memory', () => {
  // The redelivery cases log a warning per failed batch on purpose.
  Logger.overrideLogger(['error']);
  const buses: MemoryBusDriver[] = [];
  return {
    create: async () => {
      const bus = new MemoryBusDriver(4, 500, 20);
      buses.push(bus);
      return bus;
    },
    sameGroup: async (bus) => bus,
    deadLetters: async (bus, n) => (bus as MemoryBusDriver).deadLetters().slice(0, n),
    deliveryTimeoutMs: 5_000,
    dispose: async () => {
      await Promise.all(buses.map((b) => b.close()));
    },
  };
});
