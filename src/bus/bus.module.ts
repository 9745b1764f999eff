import { Module } from '@nestjs/common';
import { busFactory } from './bus.module-factory';
import { MessageBus } from './message-bus';

@Module({ providers: [busFactory], exports: [MessageBus] })
export class BusModule {}
