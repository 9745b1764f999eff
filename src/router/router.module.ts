import { Module } from '@nestjs/common';
import { BusModule } from '../bus/bus.module';
import { DirectoryModule } from '../directory/directory.module';
import { OutboxModule } from '../outbox/outbox.module';
import { SessionModule } from '../session/session.module';
import { RouterService } from './router.service';

@Module({ imports: [BusModule, DirectoryModule, OutboxModule, SessionModule], providers: [RouterService] })
export class RouterModule {}
