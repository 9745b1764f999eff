import { FactoryProvider } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Config } from '../config/config.module';
import { MemoryMarkerStoreDriver } from './drivers/memory-marker-store.driver';
import { MysqlMarkerStoreDriver } from './drivers/mysql-marker-store.driver';
import { MarkerStore } from './marker.store';

/** Markers live next to the outbox: the same engine (OUTBOX) chooses their driver. */
export const markerStoreFactory: FactoryProvider<MarkerStore> = {
  provide: MarkerStore,
  inject: [Config, { token: DataSource, optional: true }],
  useFactory: (config: Config, dataSource?: DataSource): MarkerStore => {
    switch (config.engines.outbox) {
      case 'memory':
        return new MemoryMarkerStoreDriver();
      case 'mysql':
        if (!dataSource) throw new Error('OUTBOX=mysql needs the DatabaseModule (no DataSource)');
        return new MysqlMarkerStoreDriver(dataSource);
      default:
        throw new Error(`outbox engine ${config.engines.outbox} is not available in this build`);
    }
  },
};
