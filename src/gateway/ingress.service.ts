import { Injectable, Logger } from '@nestjs/common';
import { MessageBus } from '../bus/message-bus';
import { Batcher } from '../common/batcher';
import { newMessageId } from '../common/ids';
import { ConversationDirectory } from '../directory/conversation-directory';
import { ClientFrame } from '../protocol/frames';
import { Connection } from './connection';
import { SendDedupe } from './dedupe/send-dedupe';
import { MetricsService } from '../metrics/metrics.service';

type SendFrame = Extract<ClientFrame, { type: 'send' }>;

/**
 * Client -> bus. A `send` is checked (rate, membership), given an id and timestamp (or the ones of an
 * earlier send with the same ref), published, and ACKed only once the bus says it is durable.
 *
 * Per connection the publishes are issued in frame order (each waits for the previous frame's checks
 * to finish), so a client's messages enter the bus, and are ACKed, in the order it sent them.
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
    const startedAt = performance.now();
    // Checks of consecutive frames run concurrently (and share directory/dedupe round trips); only the
    // publishes are chained, so they are issued in frame order.
    const prepared = this.prepare(conn, frame);
    conn.ingressTail = conn.ingressTail.then(async () => {
      const record = await prepared;
      if (!record) return;
      // After a failed publish, later frames of this connection fail too until its publishes have
      // drained: otherwise one could be acked before the client's retry of the failed one.
      if (conn.publishFailed) {
        if (conn.publishesInFlight > 0) {
          conn.sendError(
            'unavailable',
            'an earlier message failed; retry in order with the same msg_id',
            ref,
          );
          return;
        }
        conn.publishFailed = false;
      }
      conn.publishesInFlight++;
      // Not awaited: the next frame's publish is issued right after this one, while it is in flight.
      this.bus
        .publish(record)
        .finally(() => conn.publishesInFlight--)
        .then(
          () => {
            this.metrics.messagesIn.inc();
            this.metrics.ackLatency.observe((performance.now() - startedAt) / 1000);
            conn.sendRaw(
              JSON.stringify({
                type: 'ack',
                msg_id: record.id,
                payload: { ref, conversation_id: record.conversation_id, ts: record.ts },
              }),
            );
          },
          (err: Error) => {
            conn.publishFailed = true;
            this.metrics.sendRejected.inc({ code: 'unavailable' });
            this.logger.warn(`publish failed: ${err.message}`);
            conn.sendError('unavailable', 'message bus unavailable, retry with the same msg_id', ref);
          },
        );
    });
  }

  private async prepare(conn: Connection, frame: SendFrame) {
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
      this.logger.warn(`send rejected: ${(err as Error).message}`);
      conn.sendError('unavailable', 'service temporarily unavailable, retry with the same msg_id', ref);
      return null;
    }
  }
}
