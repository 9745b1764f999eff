import { Module } from '@nestjs/common';
import { DirectoryModule } from '../directory/directory.module';
import { GatewayModule } from '../gateway/gateway.module';
import { OutboxModule } from '../outbox/outbox.module';
import { SessionModule } from '../session/session.module';
import { ConsoleController } from './console.controller';
import { TailStreams } from './tail.streams';

/**
 * The debug console (`/console`): a page and a read-only API over the gateway's state, plus live
 * tails. Loaded with the gateway role only, and only when `config.console.enabled` (AppModule).
 */
@Module({
  imports: [GatewayModule, SessionModule, OutboxModule, DirectoryModule],
  controllers: [ConsoleController],
  providers: [TailStreams],
})
export class ConsoleModule {}
