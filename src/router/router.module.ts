import { Module } from '@nestjs/common';
import { BusModule } from '../bus/bus.module';
import { DirectoryModule } from '../directory/directory.module';
import { OutboxPurgeService } from '../outbox/outbox-purge.service';
import { OutboxModule } from '../outbox/outbox.module';
import { ReceiptsModule } from '../receipts/receipts.module';
import { SessionModule } from '../session/session.module';
import { ReceiptRouting } from './receipt-routing';
import { RouterController } from './router.controller';
import { RouterService } from './router.service';

/** Bus batches in through BusTransport (see bootstrap), outbox writes, per-node pushes, and the purge. */
@Module({
  imports: [BusModule, DirectoryModule, OutboxModule, ReceiptsModule, SessionModule],
  controllers: [RouterController],
  providers: [RouterService, ReceiptRouting, OutboxPurgeService],
})
export class RouterModule {}
