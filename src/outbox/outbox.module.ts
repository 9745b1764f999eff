import { Module } from '@nestjs/common';
import { OutboxPurgeService } from './outbox-purge.service';
import { outboxFactory } from './outbox.module-factory';
import { OutboxStore } from './outbox.store';

@Module({ providers: [outboxFactory, OutboxPurgeService], exports: [OutboxStore] })
export class OutboxModule {}
