import { Module } from '@nestjs/common';
import { NodeChannel } from './node-channel';
import { nodeChannelFactory, sessionMapFactory } from './session.module-factory';
import { SessionMap } from './session-map';

@Module({ providers: [sessionMapFactory, nodeChannelFactory], exports: [SessionMap, NodeChannel] })
export class SessionModule {}
