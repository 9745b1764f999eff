import { FactoryProvider, Logger } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Config } from '../config/config.module';
import { createDataSource, redactUrl } from '../database/data-source';
import { runMigrationsLocked } from '../database/migrate';
import { MemoryOutboxDriver } from './drivers/memory-outbox.driver';
import { MysqlOutboxDriver } from './drivers/mysql-outbox.driver';
import { ShardedOutboxDriver } from './drivers/sharded-outbox.driver';
import { OutboxStore } from './outbox.store';

const logger = new Logger('Outbox');

export const outboxFactory: FactoryProvider<OutboxStore> = {
  provide: OutboxStore,
  // The DataSource exists only when AppModule loaded the DatabaseModule (OUTBOX=mysql).
  inject: [Config, { token: DataSource, optional: true }],
  useFactory: async (config: Config, dataSource?: DataSource): Promise<OutboxStore> => {
    switch (config.engines.outbox) {
      case 'memory':
        if (config.outbox.shards.length > 0) throw new Error('OUTBOX_SHARDS needs OUTBOX=mysql');
        return new MemoryOutboxDriver(config.outbox.retentionSec * 1000, Date.now, {
          maxPerUser: config.outbox.memoryMaxPerUser,
          maxBytesPerUser: config.outbox.memoryMaxBytesPerUser,
        });
      case 'mysql':
        if (!dataSource) throw new Error('OUTBOX=mysql needs the DatabaseModule (no DataSource)');
        if (config.outbox.shards.length > 0) return openShards(config, dataSource);
        return new MysqlOutboxDriver(dataSource, config.outbox.retentionSec).init();
      default:
        throw new Error(`outbox engine ${config.engines.outbox} is not available in this build`);
    }
  },
};

/**
 * OUTBOX_SHARDS: one pool per shard (a shard at MYSQL_URL shares the directory's pool), migrated
 * like the main database when MYSQL_MIGRATE_ON_START, opened in parallel. The pools close with the
 * store on shutdown.
 */
async function openShards(config: Config, main: DataSource): Promise<ShardedOutboxDriver> {
  const own: DataSource[] = [];
  const closeAll = () => Promise.all(own.map((ds) => ds.destroy().catch(() => undefined)));
  try {
    const pools = await Promise.all(
      config.outbox.shards.map(async (url, i) => {
        if (url === config.mysql.url) return main;
        const ds = createDataSource(url, { poolSize: config.mysql.poolSize });
        own.push(ds);
        try {
          await ds.initialize();
        } catch (err) {
          throw new Error(
            `cannot connect to outbox shard ${i} at ${redactUrl(url)}: ${(err as Error).message}`,
          );
        }
        if (config.mysql.migrateOnStart) {
          const applied = await runMigrationsLocked(ds);
          if (applied.length > 0) logger.log(`outbox shard ${i}: applied migrations ${applied.join(', ')}`);
        }
        return ds;
      }),
    );
    const store = await ShardedOutboxDriver.open(
      pools.map((ds) => new MysqlOutboxDriver(ds, config.outbox.retentionSec)),
      closeAll,
    );
    logger.log(
      `sharded outbox over ${pools.length} shards: ${config.outbox.shards.map(redactUrl).join(', ')}`,
    );
    return store;
  } catch (err) {
    await closeAll();
    throw err;
  }
}
