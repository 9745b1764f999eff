import { Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { RecordBatch } from '../bus/message-bus';
import { newMessageId } from '../common/ids';
import { RateLimitedLog } from '../common/rate-limited-log';
import { MetricsService } from '../metrics/metrics.service';
import { RawStreamRecord } from '../protocol/stream-records';
import { signatureHeader, SIGNATURE_HEADER } from './webhook-signature';
import { WebhookClient } from './webhook-client';

export interface WebhookSettings {
  secrets: string[];
  batchMax: number;
  timeoutMs: number;
  retryForMs: number;
  backoffMaxMs: number;
  backoffMinMs?: number;
}

/** A stable name per URL: the metric label and the consumer group suffix (a URL may hold secrets). */
export function endpointName(url: string): string {
  return `wh-${createHash('sha256').update(url).digest('hex').slice(0, 12)}`;
}

/**
 * One webhook endpoint, fed by its own consumer group: each bus batch (one partition, in order) is
 * POSTed in chunks of at most `batchMax` events, one chunk at a time, each retried with back-off until
 * it is answered 2xx. Only then does the handler resolve, and the bus commits the group's offsets.
 *
 * Invariants: per partition (hence per conversation) events are POSTed in stream order and a chunk is
 * never POSTed before the previous one was answered 2xx (or given up on after `retryForMs`: dropped,
 * counted, logged). Stopping interrupts a retry and leaves the batch uncommitted: it is POSTed again
 * after a restart (at-least-once; receivers dedupe by event id).
 */
export class WebhookEndpoint {
  readonly name: string;
  private readonly logger: Logger;
  /** One line per 10 s for failures: every partition's chunk fails while an endpoint is down. */
  private readonly failureLog: RateLimitedLog;
  private stopping = false;
  private readonly stopped = new AbortController();

  constructor(
    private readonly url: string,
    private readonly settings: WebhookSettings,
    private readonly client: WebhookClient,
    private readonly metrics: MetricsService,
  ) {
    this.name = endpointName(url);
    this.logger = new Logger(`Webhook ${this.name}`);
    this.failureLog = new RateLimitedLog((line) => this.logger.warn(line));
  }

  /** The bus handler. Throws only when stopping (the batch comes again after the restart). */
  async handle(batch: RecordBatch): Promise<void> {
    for (let i = 0; i < batch.records.length; i += this.settings.batchMax) {
      await this.deliver(batch.records.slice(i, i + this.settings.batchMax));
    }
  }

  stop(): void {
    this.stopping = true;
    this.stopped.abort();
  }

  private async deliver(events: RawStreamRecord[]): Promise<void> {
    const body = JSON.stringify({ events });
    const delivery = newMessageId();
    const firstFailure = { at: 0 };
    const min = this.settings.backoffMinMs ?? 250;
    for (let attempt = 1; ; attempt++) {
      if (this.stopping) throw new Error('webhooks stopping: batch left uncommitted');
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'relay-webhooks/1',
        'relay-delivery': delivery,
        [SIGNATURE_HEADER]: signatureHeader(this.settings.secrets, Math.floor(Date.now() / 1000), body),
      };
      const outcome = await this.client.post(this.url, headers, body, this.settings.timeoutMs);
      if (outcome.ok) {
        this.metrics.webhookEvents.inc({ endpoint: this.name }, events.length);
        const now = Date.now();
        for (const e of events) {
          if (typeof e.ts === 'number')
            this.metrics.webhookDelay.observe({ endpoint: this.name }, (now - e.ts) / 1000);
        }
        if (attempt > 1) this.failureLog.note('recovered', `delivered again after ${attempt} attempts`);
        return;
      }
      this.metrics.webhookFailures.inc({ endpoint: this.name, reason: outcome.reason });
      const now = Date.now();
      firstFailure.at ||= now;
      if (now - firstFailure.at >= this.settings.retryForMs) {
        this.metrics.webhookDropped.inc({ endpoint: this.name }, events.length);
        this.logger.error(
          `dropping ${events.length} events (delivery ${delivery}) after ${attempt} attempts over ${now - firstFailure.at} ms: ${outcome.detail}`,
        );
        return;
      }
      const wait = Math.min(this.settings.backoffMaxMs, min * 2 ** Math.min(attempt - 1, 20));
      this.failureLog.note(
        'failed',
        `POST failed (${outcome.detail}), attempt ${attempt}; retrying in ${wait} ms`,
      );
      await this.sleep(wait);
    }
  }

  /** A back-off pause that stop() cuts short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped.signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        this.stopped.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.stopped.signal.addEventListener('abort', done);
    });
  }
}
