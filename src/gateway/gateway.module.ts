import { Module } from '@nestjs/common';
import { BusModule } from '../bus/bus.module';
import { DirectoryModule } from '../directory/directory.module';
import { OutboxModule } from '../outbox/outbox.module';
import { PresenceModule } from '../presence/presence.module';
import { SessionModule } from '../session/session.module';
import { AdmissionService } from './admission.service';
import { AuthService } from './auth.service';
import { ConnectionRegistry } from './connection.registry';
import { EgressService } from './egress.service';
import { GatewayServer } from './gateway.server';
import { HeartbeatService } from './heartbeat.service';
import { IngressService } from './ingress.service';
import { PresenceHub } from './presence-hub.service';
import { ResumeService } from './resume.service';
import { TypingService } from './typing.service';
import { TailHub } from './tail.hub';

@Module({
  imports: [BusModule, DirectoryModule, OutboxModule, SessionModule, PresenceModule],
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
    // v1.1 live features (ephemeral)
    TypingService,
    PresenceHub,
  ],
  // For the debug console (src/console), which reads them; the gateway never imports the console.
  exports: [ConnectionRegistry, TailHub],
})
export class GatewayModule {}
