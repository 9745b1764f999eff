import { Module } from '@nestjs/common';
import { busFactory } from './bus.module-factory';
import { MessageBus } from './message-bus';
import { PresenceEvents } from './presence-events';

// PresenceEvents: the hook the presence feature calls (online/offline records on the event stream).
@Module({ providers: [busFactory, PresenceEvents], exports: [MessageBus, PresenceEvents] })
export class BusModule {}
