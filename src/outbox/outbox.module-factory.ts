import { FactoryProvider } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Config } from '../config/config.module';
import { MemoryOutboxDriver } from './drivers/memory-outbox.driver';
import { MysqlOutboxDriver } from './drivers/mysql-outbox.driver';
import { OutboxStore } from './outbox.store';

export const outboxFactory: FactoryProvider<OutboxStore> = {
  provide: OutboxStore,
  // The DataSource exists only when AppModule loaded the DatabaseModule (OUTBOX=mysql).
  inject: [Config, { token: DataSource, optional: true }],
  useFactory: async (config: Config, dataSource?: DataSource): Promise<OutboxStore> => {
    switch (config.engines.outbox) {
      case 'memory':
        return new MemoryOutboxDriver(config.outbox.retentionSec * 1000, Date.now, {
          maxPerUser: config.outbox.memoryMaxPerUser,
          maxBytesPerUser: config.outbox.memoryMaxBytesPerUser,
        });
      case 'mysql':
        if (!dataSource) throw new Error('OUTBOX=mysql needs the DatabaseModule (no DataSource)');
        return new MysqlOutboxDriver(dataSource, config.outbox.retentionSec).init();
      default:
        throw new Error(`outbox engine ${config.engines.outbox} is not available in this build`);
    }
  },
};
