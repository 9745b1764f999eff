import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { BusModule } from '../bus/bus.module';
import { DirectoryModule } from '../directory/directory.module';
import { OutboxModule } from '../outbox/outbox.module';
import { SessionModule } from '../session/session.module';
import { HealthController } from './health.controller';

@Module({
  imports: [
    TerminusModule.forRoot({ logger: false }),
    BusModule,
    SessionModule,
    OutboxModule,
    DirectoryModule,
  ],
  controllers: [HealthController],
})
export class HealthModule {}
