import { Module } from '@nestjs/common';
import { AdminKeyGuard } from '../directory/directory.controller';
import { GatewayModule } from '../gateway/gateway.module';
import { PublishController } from './publish.controller';
import { PublishService } from './publish.service';

/** The HTTP publish API; loaded with the gateway role (it is a way into ingress, like `/ws`). */
@Module({
  imports: [GatewayModule],
  controllers: [PublishController],
  providers: [PublishService, AdminKeyGuard],
})
export class PublishModule {}
