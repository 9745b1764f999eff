import { Module } from '@nestjs/common';
import { BusModule } from '../bus/bus.module';
import { ConversationDirectory, DirectoryStore } from './conversation-directory';
import { AdminKeyGuard, DirectoryController } from './directory.controller';
import { directoryFactory, directoryStoreFactory, membershipCheckFactory } from './directory.module-factory';
import { MembershipCheck } from './membership-check';
import { MembersController } from './members.controller';
import { MembershipEvents } from './membership-events';

@Module({
  // The bus: membership changes are records of the event stream.
  imports: [BusModule],
  controllers: [DirectoryController, MembersController],
  providers: [
    directoryStoreFactory,
    directoryFactory,
    membershipCheckFactory,
    AdminKeyGuard,
    MembershipEvents,
  ],
  exports: [ConversationDirectory, DirectoryStore, MembershipCheck],
})
export class DirectoryModule {}
