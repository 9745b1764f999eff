import { Module } from '@nestjs/common';
import { BusModule } from '../bus/bus.module';
import { DirectoryModule } from '../directory/directory.module';
import { OutboxModule } from '../outbox/outbox.module';
import { ReceiptsModule } from '../receipts/receipts.module';
import { SessionModule } from '../session/session.module';
import { AdmissionService } from './admission.service';
import { AuthService } from './auth.service';
import { ConnectionRegistry } from './connection.registry';
import { EgressService } from './egress.service';
import { GatewayServer } from './gateway.server';
import { HeartbeatService } from './heartbeat.service';
import { IngressService } from './ingress.service';
import { ResumeService } from './resume.service';
import { ReceiptIngressService } from './receipt-ingress.service';
import { ReceiptsController } from './receipts.controller';
import { TailHub } from './tail.hub';

@Module({
  imports: [BusModule, DirectoryModule, OutboxModule, ReceiptsModule, SessionModule],
  controllers: [ReceiptsController],
  providers: [
    AuthService,
    AdmissionService,
    ConnectionRegistry,
    IngressService,
    EgressService,
    ResumeService,
    HeartbeatService,
    GatewayServer,
    TailHub,
    ReceiptIngressService,
  ],
  // For the debug console (src/console), which reads them; the gateway never imports the console.
  exports: [ConnectionRegistry, TailHub],
})
export class GatewayModule {}
