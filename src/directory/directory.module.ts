import { Module } from '@nestjs/common';
import { ConversationDirectory, DirectoryStore } from './conversation-directory';
import { AdminKeyGuard, DirectoryController } from './directory.controller';
import { directoryFactory, directoryStoreFactory } from './directory.module-factory';

@Module({
  controllers: [DirectoryController],
  providers: [directoryStoreFactory, directoryFactory, AdminKeyGuard],
  exports: [ConversationDirectory, DirectoryStore],
})
export class DirectoryModule {}
