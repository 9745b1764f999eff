import { Injectable, Logger } from '@nestjs/common';
import { apiError } from '../common/api-error';
import { Config } from '../config/config.module';
import { decodeFrame } from '../gateway/frame.codec';
import { IngressPipeline, Submission } from '../gateway/ingress-pipeline';
import { MetricsService } from '../metrics/metrics.service';
import { StreamMessageRecord } from '../protocol/stream-records';
import { ID_PATTERN, ID_PATTERN_SOURCE } from '../protocol/frames';

/** What the refusal codes of the WebSocket protocol answer over HTTP. */
const STATUS = { not_found: 404, forbidden: 403 } as const;

/**
 * The HTTP publish API's logic: each message is checked exactly as a WebSocket `send` would be (the
 * protocol's frame schema, size and depth limits, via the gateway's codec on the equivalent frame),
 * then goes through the gateway's IngressPipeline (membership, dedupe, publish).
 *
 * A request is all or nothing as far as the caller can tell: every message is validated and checked
 * before the first is published; publishes are issued in request order (per conversation the bus
 * keeps that order), and the answer is 201 only once all are durable. On 503 the caller retries the
 * whole request with the same refs: the ones that got through keep their ids and are not duplicated.
 */
@Injectable()
export class PublishService {
  private readonly logger = new Logger(PublishService.name);

  constructor(
    private readonly pipeline: IngressPipeline,
    private readonly config: Config,
    private readonly metrics: MetricsService,
  ) {}

  /** Checks one message of a request; throws the HTTP error (400, 413) the caller gets. */
  validate(conversationId: unknown, raw: unknown, index?: number): Submission {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw apiError(400, 'bad_request', 'a message must be a JSON object {from, body, ref}', index);
    }
    const m = raw as { from?: unknown; body?: unknown; ref?: unknown };
    if (typeof m.from !== 'string' || !ID_PATTERN.test(m.from)) {
      throw apiError(400, 'bad_request', `from must be a string matching ${ID_PATTERN_SOURCE}`, index);
    }
    if (typeof conversationId !== 'string') {
      throw apiError(400, 'bad_request', 'conversation_id must be a string', index);
    }
    // The frame a WebSocket client would have sent: the same limits apply to the same bytes.
    let text: string;
    try {
      text = JSON.stringify({
        type: 'send',
        msg_id: m.ref,
        payload: { conversation_id: conversationId, body: m.body },
      });
    } catch {
      // Nesting so deep that serialising it overflows the stack.
      throw apiError(
        400,
        'bad_request',
        `body nests deeper than ${this.config.gateway.maxJsonDepth - 2} levels`,
        index,
      );
    }
    const max = this.config.gateway.maxFrameBytes;
    if (Buffer.byteLength(text) > max) {
      throw apiError(
        413,
        'too_large',
        `message is larger than MAX_FRAME_BYTES (${max} bytes as a send frame)`,
        index,
      );
    }
    const decoded = decodeFrame(text, this.config.gateway.maxJsonDepth);
    if (!decoded.ok) throw apiError(400, 'bad_request', httpWording(decoded.message), index);
    return {
      from: m.from,
      conversationId,
      ref: m.ref as string,
      body: m.body,
      service: this.config.publish.serviceIds.has(m.from),
    };
  }

  /** Checks, then publishes in order; resolves once every message is durable on the bus. */
  async publish(items: Submission[]): Promise<StreamMessageRecord[]> {
    const batch = items.length > 1;
    let prepared;
    try {
      prepared = await Promise.all(items.map((s) => this.pipeline.prepare(s)));
    } catch (err) {
      this.logger.warn(`publish refused: ${(err as Error).message}`);
      throw apiError(503, 'unavailable', 'service temporarily unavailable, retry with the same refs');
    }
    const records: StreamMessageRecord[] = [];
    for (let i = 0; i < prepared.length; i++) {
      const p = prepared[i];
      if (!p.ok) {
        this.metrics.sendRejected.inc({ code: p.refusal.code });
        throw apiError(STATUS[p.refusal.code], p.refusal.code, p.refusal.message, batch ? i : undefined);
      }
      records.push(p.record);
    }
    // Issued back to back, in order: the bus keeps the order per conversation.
    const publishes = records.map((r) => this.pipeline.publish(r));
    const outcomes = await Promise.allSettled(publishes);
    const failed = outcomes.find((o) => o.status === 'rejected');
    if (failed) {
      this.logger.warn(`publish failed: ${(failed.reason as Error).message}`);
      throw apiError(503, 'unavailable', 'message bus unavailable, retry with the same refs');
    }
    this.metrics.messagesIn.inc(records.length);
    return records;
  }
}

/** The codec speaks of frames; the HTTP caller sent `ref`, `conversation_id` and `body`. */
function httpWording(message: string): string {
  return message
    .replace(/^msg_id\b/, 'ref')
    .replace(/^frame must have required property 'msg_id'/, 'ref is required')
    .replace(/^payload must have required property 'body'/, 'body is required')
    .replace(/^payload\.conversation_id\b/, 'conversation id')
    .replace(
      /^frame nests deeper than (\d+) levels/,
      (_, n: string) => `body nests deeper than ${Number(n) - 2} levels`,
    );
}
