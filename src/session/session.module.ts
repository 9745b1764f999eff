import { Module } from '@nestjs/common';
import { NodeChannel } from './node-channel';
import { nodeChannelFactory, sendDedupeFactory, sessionMapFactory } from './session.module-factory';
import { SendDedupe } from './send-dedupe';
import { SessionMap } from './session-map';

/**
 * Per-user state every gateway shares, none of it durable (the outbox is): who is connected where,
 * the per-node push channels, and the send-dedupe window. One engine (`SESSIONS`) stores all three.
 */
@Module({
  providers: [sessionMapFactory, nodeChannelFactory, sendDedupeFactory],
  exports: [SessionMap, NodeChannel, SendDedupe],
})
export class SessionModule {}
