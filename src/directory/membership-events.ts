import { Injectable } from '@nestjs/common';
import { MessageBus } from '../bus/message-bus';
import { newMessageId } from '../common/ids';
import { MembershipRecord, STREAM_SCHEMA_VERSION } from '../protocol/stream-records';

/** Largest `members` list in one membership record: records stay far below the broker's size limit. */
export const MEMBERSHIP_RECORD_MAX_IDS = 1000;

/**
 * Writes membership changes to the event stream (kind `membership`), keyed by conversation so they
 * are ordered with its messages. Resolves once durable; the directory change is already made, so a
 * caller that sees a failure retries the (idempotent) request and the record is written then.
 */
@Injectable()
export class MembershipEvents {
  constructor(private readonly bus: MessageBus) {}

  async changed(
    conversationId: string,
    op: MembershipRecord['op'],
    detail: { members?: string[]; member_count?: number } = {},
  ): Promise<void> {
    const parts: (string[] | undefined)[] = [];
    if (detail.members === undefined) parts.push(undefined);
    for (let i = 0; detail.members && i < detail.members.length; i += MEMBERSHIP_RECORD_MAX_IDS) {
      parts.push(detail.members.slice(i, i + MEMBERSHIP_RECORD_MAX_IDS));
    }
    await Promise.all(
      parts.map((members) => {
        const ts = Date.now();
        const record: MembershipRecord = {
          schema_version: STREAM_SCHEMA_VERSION,
          kind: 'membership',
          id: newMessageId(ts),
          conversation_id: conversationId,
          ts,
          op,
          ...(members ? { members } : {}),
          ...(detail.member_count !== undefined ? { member_count: detail.member_count } : {}),
        };
        return this.bus.publishRecord(record);
      }),
    );
  }
}
