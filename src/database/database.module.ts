import { DynamicModule, Global, Module } from '@nestjs/common';

/**
 * MySQL (TypeORM DataSource) for the outbox and the built-in directory; loaded only when OUTBOX=mysql.
 * TODO(mysql engine): provide the DataSource, run migrations on start under a lock when configured.
 */
@Global()
@Module({})
export class DatabaseModule {
  static forRoot(): DynamicModule {
    return { module: DatabaseModule, providers: [], exports: [] };
  }
}
