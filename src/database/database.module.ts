import {
  DynamicModule,
  FactoryProvider,
  Global,
  Injectable,
  Logger,
  Module,
  OnApplicationShutdown,
} from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Config } from '../config/config.module';
import { createDataSource, redactUrl } from './data-source';
import { runMigrationsLocked } from './migrate';

const logger = new Logger('Database');

/**
 * Connects (failing startup with the reason when the database cannot be reached) and, when
 * MYSQL_MIGRATE_ON_START is on, applies pending migrations under the migration lock before
 * anything else may use the database.
 */
export const dataSourceProvider: FactoryProvider<DataSource> = {
  provide: DataSource,
  inject: [Config],
  useFactory: async (config: Config): Promise<DataSource> => {
    const ds = createDataSource(config.mysql.url, { poolSize: config.mysql.poolSize });
    try {
      await ds.initialize();
    } catch (err) {
      throw new Error(`cannot connect to MySQL at ${redactUrl(config.mysql.url)}: ${(err as Error).message}`);
    }
    if (config.mysql.migrateOnStart) {
      try {
        const applied = await runMigrationsLocked(ds);
        if (applied.length > 0) logger.log(`applied migrations: ${applied.join(', ')}`);
      } catch (err) {
        await ds.destroy().catch(() => undefined);
        throw new Error(`database migration failed: ${(err as Error).message}`);
      }
    }
    return ds;
  },
};

/** Closes the pool once the application has shut down. */
@Injectable()
export class DatabaseLifecycle implements OnApplicationShutdown {
  constructor(private readonly ds: DataSource) {}

  async onApplicationShutdown(): Promise<void> {
    if (this.ds.isInitialized) await this.ds.destroy();
  }
}

/**
 * MySQL (TypeORM DataSource) for the outbox and the built-in directory; loaded only when OUTBOX=mysql.
 * The schema comes from the migrations in ./migrations (never `synchronize`): applied at startup
 * when MYSQL_MIGRATE_ON_START (default on), or by `node dist/database/migrate.cli.js`.
 */
@Global()
@Module({})
export class DatabaseModule {
  static forRoot(): DynamicModule {
    return {
      module: DatabaseModule,
      providers: [dataSourceProvider, DatabaseLifecycle],
      exports: [DataSource],
    };
  }
}
