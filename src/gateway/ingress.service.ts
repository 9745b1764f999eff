import { Injectable, Logger } from '@nestjs/common';
import { MessageBus } from '../bus/message-bus';
import { Batcher } from '../common/batcher';
import { newMessageId } from '../common/ids';
import { ConversationDirectory } from '../directory/conversation-directory';
import { CLOSE, ClientFrame } from '../protocol/frames';
import { Connection } from './connection';
import { SendDedupe } from '../session/send-dedupe';
import { MetricsService } from '../metrics/metrics.service';

type SendFrame = Extract<ClientFrame, { type: 'send' }>;

/**
 * Client -> bus. A `send` is checked (rate, membership), given an id and timestamp (or the ones of an
 * earlier send with the same ref), published, and ACKed only once the bus says it is durable.
 *
 * Per-sender order (docs/protocol.md "Acks and retries"). Invariants, per connection:
 * - Publishes are issued in frame order: each frame's publish stage (the `ingressTail` chain) runs
 *   after the previous frame's, once its own checks are done, so a client's messages enter the bus,
 *   and are ACKed, in the order it sent them.
 * - `send` frames are numbered on arrival (`conn.sendsReceived`). When a send is answered
 *   `unavailable` because a dependency failed (directory or dedupe store in `prepare`, or the bus),
 *   every send with a higher number received up to that moment is refused `unavailable` at its
 *   publish stage (`conn.refusals`); sends received afterwards are processed normally. So the client's
 *   in-order retries cannot be overtaken by a message it sent after the failed one.
 * - Only real failures open such a range, refusals by this rule do not: a client that keeps sending
 *   is not refused forever.
 * - Special case of the bus: publishes already issued when one fails may still fail (Kafka fails the
 *   ones queued behind it), so after a publish failure later frames are also refused until the
 *   connection's publishes in flight have settled (`publishFailed`).
 */
@Injectable()
export class IngressService {
  private readonly logger = new Logger(IngressService.name);
  /** Membership checks of concurrent sends share one directory call (one query for the SQL store). */
  private readonly membership = new Batcher<string, string[] | null>(async (ids) => {
    const found = await this.directory.members([...new Set(ids)]);
    return ids.map((id) => found.get(id) ?? null);
  });

  constructor(
    private readonly bus: MessageBus,
    private readonly directory: ConversationDirectory,
    private readonly dedupe: SendDedupe,
    private readonly metrics: MetricsService,
  ) {}

  handleSend(conn: Connection, frame: SendFrame): void {
    const ref = frame.msg_id;
    if (!conn.takeSendToken()) {
      this.metrics.sendRejected.inc({ code: 'rate_limited' });
      conn.sendError('rate_limited', 'too many messages, slow down', ref);
      return;
    }
    const n = ++conn.sendsReceived;
    const startedAt = performance.now();
    // Checks of consecutive frames run concurrently (and share directory/dedupe round trips); only the
    // publishes are chained, so they are issued in frame order.
    const prepared = this.prepare(conn, frame, n);
    // Every stage and callback below catches its own exceptions: a rejected tail would silently drop
    // every later send of the connection.
    conn.ingressTail = conn.ingressTail.then(async () => {
      try {
        const record = await prepared;
        if (!record) return;
        if (refusedAfterFailure(conn, n) || (conn.publishFailed && conn.publishesInFlight > 0)) {
          this.metrics.sendRejected.inc({ code: 'unavailable' });
          conn.sendError(
            'unavailable',
            'an earlier message failed; retry in order with the same msg_id',
            ref,
          );
          return;
        }
        conn.publishFailed = false;
        if (conn.expired()) {
          // Nothing is accepted after the token's exp; the expiry timer may just not have fired yet.
          conn.close(CLOSE.unauthorized, 'token expired');
          return;
        }
        conn.publishesInFlight++;
        // Not awaited: the next frame's publish is issued right after this one, while it is in flight.
        this.bus
          .publish(record)
          .finally(() => conn.publishesInFlight--)
          .then(
            () => {
              try {
                this.metrics.messagesIn.inc();
                this.metrics.ackLatency.observe((performance.now() - startedAt) / 1000);
                conn.sendRaw(
                  JSON.stringify({
                    type: 'ack',
                    msg_id: record.id,
                    payload: { ref, conversation_id: record.conversation_id, ts: record.ts },
                  }),
                );
              } catch (err) {
                this.contain(conn, err);
              }
            },
            (err: Error) => {
              try {
                conn.publishFailed = true;
                refuseReceivedAfter(conn, n);
                this.metrics.sendRejected.inc({ code: 'unavailable' });
                this.logger.warn(`publish failed: ${err.message}`);
                conn.sendError('unavailable', 'message bus unavailable, retry with the same msg_id', ref);
              } catch (e) {
                this.contain(conn, e);
              }
            },
          );
      } catch (err) {
        this.contain(conn, err);
      }
    });
  }

  /** An unexpected exception while handling a connection's send: log, count, close it 1011. */
  private contain(conn: Connection, err: unknown): void {
    this.metrics.contained.labels('ingress').inc();
    const what = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.logger.error(`unexpected error handling a send of user ${conn.userId}: ${what}`);
    conn.close(CLOSE.internal, 'internal error');
  }

  private async prepare(conn: Connection, frame: SendFrame, n: number) {
    const ref = frame.msg_id;
    const conversationId = frame.payload.conversation_id;
    try {
      const members = await this.membership.add(conversationId);
      if (!members) {
        conn.sendError('not_found', `conversation ${conversationId} does not exist`, ref);
        return null;
      }
      if (!members.includes(conn.userId)) {
        conn.sendError('forbidden', `you are not a member of conversation ${conversationId}`, ref);
        return null;
      }
      const now = Date.now();
      const candidate = { id: newMessageId(now), ts: now, conversation_id: conversationId };
      const ack = (await this.dedupe.reserve(conn.userId, ref, candidate)) ?? candidate;
      return { ...ack, from: conn.userId, body: frame.payload.body, ref };
    } catch (err) {
      refuseReceivedAfter(conn, n);
      this.metrics.sendRejected.inc({ code: 'unavailable' });
      this.logger.warn(`send rejected: ${(err as Error).message}`);
      conn.sendError('unavailable', 'service temporarily unavailable, retry with the same msg_id', ref);
      return null;
    }
  }
}

/** Send n failed now: the sends after it that have already arrived must not overtake its retry. */
function refuseReceivedAfter(conn: Connection, n: number): void {
  if (conn.sendsReceived > n) conn.refusals.push({ after: n, through: conn.sendsReceived });
}

/**
 * Whether send n falls in a range opened by an earlier failure. Publish stages visit sends in
 * increasing n, so ranges that end below n can never match again and are dropped.
 */
function refusedAfterFailure(conn: Connection, n: number): boolean {
  const ranges = conn.refusals;
  if (ranges.length === 0) return false;
  let refused = false;
  let kept = 0;
  for (const r of ranges) {
    if (r.through < n) continue;
    ranges[kept++] = r;
    if (r.after < n) refused = true;
  }
  ranges.length = kept;
  return refused;
}
