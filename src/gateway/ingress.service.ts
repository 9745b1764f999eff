import { Injectable, Logger } from '@nestjs/common';
import { CLOSE, ClientFrame, ErrorCode } from '../protocol/frames';
import { Connection } from './connection';
import { IngressPipeline } from './ingress-pipeline';
import { MetricsService } from '../metrics/metrics.service';
import { Containment } from './containment';
import { TailHub } from './tail.hub';
import type { Span, Tracer } from '@opentelemetry/api';
import { IngressMessage } from '../protocol/envelope';
import { endSpan, messageTracer, SpanKind, startSpan, traceparentOf } from '../common/tracing';

type SendFrame = Extract<ClientFrame, { type: 'send' }>;

/**
 * Client -> bus. A `send` is checked (rate, membership), given an id and timestamp (or the ones of an
 * earlier send with the same ref), published, and ACKed only once the bus says it is durable.
 *
 * Per-sender order (docs/protocol.md "Acks and retries") is kept by the connection's IngressLane (its
 * invariants are stated there): the checks of consecutive sends run concurrently, their publish
 * stages run on the lane in frame order, and a failure refuses the sends already received after it.
 */
@Injectable()
export class IngressService {
  private readonly logger = new Logger(IngressService.name);
  private readonly boundary: Containment;

  constructor(
    private readonly pipeline: IngressPipeline,
    private readonly metrics: MetricsService,
    // Optional for unit tests that build the service by hand (an idle hub: nobody tails).
    private readonly tail: TailHub = new TailHub(),
  ) {
    this.boundary = new Containment(metrics, this.logger);
  }

  handleSend(conn: Connection, frame: SendFrame): void {
    const ref = frame.msg_id;
    if (!conn.takeSendToken()) {
      this.metrics.sendRejected.inc({ code: 'rate_limited' });
      this.refuse(conn, frame, 'rate_limited', 'too many messages, slow down', ref);
      return;
    }
    const lane = conn.ingress;
    const n = lane.receive();
    const startedAt = performance.now();
    // Checks of consecutive frames run concurrently (and share directory/dedupe round trips); only the
    // publishes are chained, so they are issued in frame order.
    const prepared = this.prepare(conn, frame, n);
    // Every stage and callback below catches its own exceptions: a rejected stage would silently drop
    // every later send of the connection.
    lane.enqueue(async () => {
      try {
        const record = await prepared;
        if (!record) return;
        if (lane.refuses(n)) {
          this.refuse(
            conn,
            frame,
            'unavailable',
            'an earlier message failed; retry in order with the same msg_id',
            ref,
          );
          return;
        }
        if (conn.expired()) {
          // Nothing is accepted after the token's exp; the expiry timer may just not have fired yet.
          conn.close(CLOSE.unauthorized, 'token expired');
          return;
        }
        // Tracing on: the message's trace starts here, its context travels in the record.
        const tracer = messageTracer();
        const span = tracer ? this.publishSpan(tracer, conn, record) : undefined;
        const message: IngressMessage = span ? { ...record, trace: traceparentOf(span) } : record;
        // Not awaited: the next frame's publish is issued right after this one, while it is in flight.
        lane.publishing(this.pipeline.publish(message)).then(
          () => {
            span?.end();
            try {
              this.metrics.messagesIn.inc();
              // Per message: build the fields only when debug lines are written at all.
              if (Logger.isLevelEnabled('debug'))
                this.logger.debug('published', { msg: record.id, conn: conn.id, ref });
              this.metrics.ackLatency.observe((performance.now() - startedAt) / 1000);
              conn.sendRaw(
                JSON.stringify({
                  type: 'ack',
                  msg_id: record.id,
                  payload: { ref, conversation_id: record.conversation_id, ts: record.ts },
                }),
              );
              if (this.tail.active) {
                this.tail.publish({
                  kind: 'ack',
                  at: Date.now(),
                  conversation: record.conversation_id,
                  user: conn.userId,
                  msg_id: record.id,
                  ref,
                });
              }
            } catch (err) {
              this.boundary.contain('ingress', err, conn);
            }
          },
          (err: Error) => {
            if (span) endSpan(span, err);
            try {
              lane.publishFailed(n);
              this.logger.warn(`publish failed: ${err.message}`, { msg: record.id, conn: conn.id });
              this.refuse(
                conn,
                frame,
                'unavailable',
                'message bus unavailable, retry with the same msg_id',
                ref,
              );
            } catch (e) {
              this.boundary.contain('ingress', e, conn);
            }
          },
        );
      } catch (err) {
        this.boundary.contain('ingress', err, conn);
      }
    });
  }

  private publishSpan(tracer: Tracer, conn: Connection, record: IngressMessage): Span {
    return startSpan(
      tracer,
      'relay.gateway.publish',
      SpanKind.PRODUCER,
      {
        'messaging.message.id': record.id,
        'relay.conversation_id': record.conversation_id,
        'relay.conn_id': conn.id,
      },
      null,
    );
  }

  private async prepare(conn: Connection, frame: SendFrame, n: number) {
    const ref = frame.msg_id;
    const conversationId = frame.payload.conversation_id;
    try {
      const prepared = await this.pipeline.prepare({
        from: conn.userId,
        conversationId,
        ref,
        body: frame.payload.body,
      });
      if (!prepared.ok) {
        const { code, message } = prepared.refusal;
        // The WebSocket wording: the sender is the connection's user.
        const text =
          code === 'forbidden' ? `you are not a member of conversation ${conversationId}` : message;
        this.refuse(conn, frame, code, text, ref);
        return null;
      }
      return prepared.record;
    } catch (err) {
      conn.ingress.checkFailed(n);
      this.logger.warn(`send rejected: ${(err as Error).message}`, { conn: conn.id });
      this.refuse(
        conn,
        frame,
        'unavailable',
        'service temporarily unavailable, retry with the same msg_id',
        ref,
      );
      return null;
    }
  }

  /** Answers the sender with an error, and shows it on the debug console's tails (when any). */
  /** Answers a send with an error: counted, and shown to a console tail when one is open. */
  private refuse(conn: Connection, frame: SendFrame, code: ErrorCode, message: string, ref: string): void {
    this.metrics.sendRejected.inc({ code });
    conn.sendError(code, message, ref);
    if (this.tail.active) {
      const conversation = frame.payload.conversation_id;
      this.tail.publish({
        kind: 'error',
        at: Date.now(),
        conversation,
        user: conn.userId,
        code,
        message,
        ref,
      });
    }
  }
}
