import { Module } from '@nestjs/common';
import { Config } from '../config/config.module';
import { ConversationDirectory } from '../directory/conversation-directory';
import { AdminKeyGuard } from '../directory/directory.controller';
import { DirectoryModule } from '../directory/directory.module';
import { MembershipCache } from './membership.cache';
import { PresenceController } from './presence.controller';
import { presenceStoreFactory } from './presence.module-factory';
import { PresenceStore } from './presence.store';

/**
 * v1.1 presence state shared by every gateway (the store), and its HTTP read for backends
 * (`GET /v1/presence`, on every role like the directory API). The WebSocket side is the gateway's
 * PresenceHub.
 */
@Module({
  imports: [DirectoryModule],
  controllers: [PresenceController],
  providers: [
    presenceStoreFactory,
    AdminKeyGuard,
    {
      provide: MembershipCache,
      inject: [ConversationDirectory, Config],
      useFactory: (directory: ConversationDirectory, config: Config) =>
        new MembershipCache(directory, config.directory.cacheTtlMs),
    },
  ],
  exports: [PresenceStore, MembershipCache],
})
export class PresenceModule {}
