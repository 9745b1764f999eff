import { FactoryProvider } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Config } from '../config/config.module';
import { ConversationDirectory, DirectoryStore } from './conversation-directory';
import { BuiltinDirectoryDriver } from './drivers/builtin-directory.driver';
import { HttpDirectoryDriver } from './drivers/http-directory.driver';
import { MemoryDirectoryStoreDriver } from './drivers/memory-directory-store.driver';
import { MysqlDirectoryStoreDriver } from './drivers/mysql-directory-store.driver';
import { DirectoryMembershipDriver } from './drivers/directory-membership.driver';
import { RedisMembershipDriver } from './drivers/redis-membership.driver';
import { MembershipCheck } from './membership-check';
import { RedisConnections } from '../redis/redis.module';

/** The built-in directory lives in the same database as the outbox. */
export const directoryStoreFactory: FactoryProvider<DirectoryStore> = {
  provide: DirectoryStore,
  // The DataSource exists only when AppModule loaded the DatabaseModule (OUTBOX=mysql).
  inject: [Config, { token: DataSource, optional: true }],
  useFactory: (config: Config, dataSource?: DataSource): DirectoryStore => {
    switch (config.engines.outbox) {
      case 'memory':
        return new MemoryDirectoryStoreDriver();
      case 'mysql':
        if (!dataSource) throw new Error('OUTBOX=mysql needs the DatabaseModule (no DataSource)');
        return new MysqlDirectoryStoreDriver(dataSource);
      default:
        throw new Error(`directory store for ${config.engines.outbox} is not available in this build`);
    }
  },
};

export const directoryFactory: FactoryProvider<ConversationDirectory> = {
  provide: ConversationDirectory,
  inject: [Config, DirectoryStore],
  useFactory: (config: Config, store: DirectoryStore): ConversationDirectory =>
    config.directory.kind === 'http'
      ? new HttpDirectoryDriver(
          config.directory.serviceUrl!,
          config.directory.cacheTtlMs,
          config.directory.timeoutMs,
        )
      : new BuiltinDirectoryDriver(store),
};

/**
 * The gateway's per-send membership check. Built-in directory on MySQL with Redis sessions (the
 * production engines): Redis sets kept exact by the directory API (RedisMembershipDriver). The HTTP
 * directory keeps its own cache rules, and an in-process store is read directly.
 */
export const membershipCheckFactory: FactoryProvider<MembershipCheck> = {
  provide: MembershipCheck,
  // RedisConnections exists only when AppModule loaded the RedisModule (SESSIONS=redis).
  inject: [Config, ConversationDirectory, DirectoryStore, { token: RedisConnections, optional: true }],
  useFactory: (
    config: Config,
    directory: ConversationDirectory,
    store: DirectoryStore,
    redis?: RedisConnections,
  ): MembershipCheck => {
    if (config.directory.kind === 'http') return new DirectoryMembershipDriver(directory);
    if (config.engines.outbox === 'mysql' && redis) return new RedisMembershipDriver(redis, store);
    return new DirectoryMembershipDriver(directory, config.engines.outbox !== 'memory');
  },
};
