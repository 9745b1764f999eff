import { Module } from '@nestjs/common';
import { BusModule } from '../bus/bus.module';
import { DirectoryModule } from '../directory/directory.module';
import { OutboxModule } from '../outbox/outbox.module';
import { PresenceModule } from '../presence/presence.module';
import { ReceiptsModule } from '../receipts/receipts.module';
import { SessionModule } from '../session/session.module';
import { AdmissionService } from './admission.service';
import { AuthService } from './auth.service';
import { ConnectionRegistry } from './connection.registry';
import { EgressService } from './egress.service';
import { GatewayServer } from './gateway.server';
import { HeartbeatService } from './heartbeat.service';
import { IngressService } from './ingress.service';
import { IngressPipeline } from './ingress-pipeline';
import { PresenceHub } from './presence-hub.service';
import { ResumeService } from './resume.service';
import { TypingService } from './typing.service';
import { ReceiptIngressService } from './receipt-ingress.service';
import { ReceiptsController } from './receipts.controller';
import { TailHub } from './tail.hub';
import { PollController } from './poll/poll.controller';
import { PollService } from './poll/poll.service';

@Module({
  imports: [BusModule, DirectoryModule, OutboxModule, PresenceModule, ReceiptsModule, SessionModule],
  // Long polling (issue 12) and v1.1 receipts over HTTP.
  controllers: [PollController, ReceiptsController],
  providers: [
    AuthService,
    AdmissionService,
    ConnectionRegistry,
    IngressPipeline,
    IngressService,
    EgressService,
    ResumeService,
    HeartbeatService,
    GatewayServer,
    TailHub,
    PollService,
    // v1.1 live features (ephemeral)
    TypingService,
    PresenceHub,
    ReceiptIngressService,
  ],
  // For the debug console (src/console), which reads them; the gateway never imports the console.
  // IngressPipeline: for the HTTP publish API (src/publish), the same checks and publish as a `send`.
  exports: [ConnectionRegistry, TailHub, IngressPipeline],
})
export class GatewayModule {}
