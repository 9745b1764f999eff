import { Injectable } from '@nestjs/common';
import { newMessageId } from '../common/ids';
import { PresenceRecord, STREAM_SCHEMA_VERSION } from '../protocol/stream-records';
import { MessageBus } from './message-bus';

/**
 * Called by the gateway's PresenceHub for every presence flip (once cluster-wide: a user's first
 * connection anywhere, or the offline announced after the grace); it writes a
 * `presence` record to the event stream (key `presence:<user_id>`), so webhooks and stream consumers
 * get online/offline events with no change on their side. Resolves once the record is durable.
 */
@Injectable()
export class PresenceEvents {
  constructor(private readonly bus: MessageBus) {}

  presenceChanged(userId: string, status: 'online' | 'offline', ts = Date.now()): Promise<void> {
    const record: PresenceRecord = {
      schema_version: STREAM_SCHEMA_VERSION,
      kind: 'presence',
      id: newMessageId(ts),
      user_id: userId,
      status,
      ts,
    };
    return this.bus.publishRecord(record);
  }
}
