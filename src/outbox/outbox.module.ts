import { Module } from '@nestjs/common';
import { outboxFactory } from './outbox.module-factory';
import { OutboxStore } from './outbox.store';

@Module({ providers: [outboxFactory], exports: [OutboxStore] })
export class OutboxModule {}
