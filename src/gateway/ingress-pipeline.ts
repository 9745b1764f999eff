import { Injectable } from '@nestjs/common';
import { MessageBus } from '../bus/message-bus';
import { newMessageId } from '../common/ids';
import { Membership, MembershipCheck } from '../directory/membership-check';
import { IngressMessage } from '../protocol/envelope';
import { STREAM_SCHEMA_VERSION, StreamMessageRecord } from '../protocol/stream-records';
import { SendDedupe } from '../session/send-dedupe';

/** A message to accept, from a WebSocket `send` or from the HTTP publish API. */
export interface Submission {
  from: string;
  conversationId: string;
  ref: string;
  body: unknown;
  /** A declared service id: may post to any existing conversation without being a member. */
  service?: boolean;
}

/** Why a submission is refused (the codes of the WebSocket protocol). */
export interface Refusal {
  code: 'not_found' | 'forbidden';
  message: string;
}

export type Prepared = { ok: true; record: StreamMessageRecord } | { ok: false; refusal: Refusal };

/**
 * The part of ingress every way in shares (WebSocket sends, the HTTP publish API): the membership
 * check, the id and timestamp (or those reserved by an earlier submission with the same sender and
 * ref, in the dedupe store), and the publish. Ordering and answering are the caller's: the gateway
 * chains publishes per connection (IngressLane), the HTTP API per request.
 *
 * `prepare` throws when a dependency (directory, dedupe store) fails: the caller answers
 * `unavailable`, and a retry with the same ref gets the id reserved by this attempt.
 */
@Injectable()
export class IngressPipeline {
  constructor(
    private readonly bus: MessageBus,
    private readonly membership: MembershipCheck,
    private readonly dedupe: SendDedupe,
  ) {}

  async prepare(s: Submission): Promise<Prepared> {
    const now = Date.now();
    const candidate = { id: newMessageId(now), ts: now, conversation_id: s.conversationId };
    // The membership check and the dedupe reservation are independent: issued together, a send waits
    // for the slower one, not their sum (on the production engines both are Redis commands that ioredis
    // auto-pipelines into one round trip). Both settle before anything is decided (no unobserved
    // rejection). A refused submission gives its fresh reservation back.
    const [membership, reservation] = await Promise.allSettled([
      this.membership.check(s.conversationId, s.from),
      this.dedupe.reserve(s.from, s.ref, candidate),
    ]);
    // A failed check throws (the caller answers `unavailable`); a reservation made meanwhile is kept:
    // the client's retry with the same ref gets this attempt's id, as documented above.
    if (membership.status === 'rejected') throw membership.reason;
    const refusal = refusalOf(s, membership.value);
    if (refusal) {
      if (reservation.status === 'fulfilled' && reservation.value === null)
        await this.dedupe.release(s.from, s.ref, candidate);
      return { ok: false, refusal };
    }
    if (reservation.status === 'rejected') throw reservation.reason;
    const ack = reservation.value ?? candidate;
    // The record is the public event stream's message record (docs/schemas/stream-record.schema.json).
    const record: StreamMessageRecord = {
      ...ack,
      from: s.from,
      body: s.body,
      ref: s.ref,
      kind: 'message',
      schema_version: STREAM_SCHEMA_VERSION,
    };
    return { ok: true, record };
  }

  /** Resolves once the bus holds the message durably (Kafka: acks=all). */
  publish(message: IngressMessage): Promise<void> {
    return this.bus.publish(message);
  }
}

function refusalOf(s: Submission, membership: Membership): Refusal | null {
  if (membership === 'no_conversation')
    return { code: 'not_found', message: `conversation ${s.conversationId} does not exist` };
  if (!s.service && membership !== 'member')
    return { code: 'forbidden', message: `${s.from} is not a member of conversation ${s.conversationId}` };
  return null;
}
