import { Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { RecordBatch } from '../bus/message-bus';
import { Batcher } from '../common/batcher';
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
  /** How long events wait for others to share their POST (default 20 ms): few POSTs under live traffic. */
  lingerMs?: number;
}

/** A stable name per URL: the metric label and the consumer group suffix (a URL may hold secrets). */
export function endpointName(url: string): string {
  return `wh-${createHash('sha256').update(url).digest('hex').slice(0, 12)}`;
}

/**
 * One webhook endpoint, fed by its own consumer group. The events of every partition's bus batches go
 * into one queue (a Batcher: one POST in flight, the next one filling meanwhile, at most `batchMax`
 * events each, in arrival order), entering it together once per `lingerMs` window, so live traffic
 * spread over many partitions costs few POSTs (webhook POSTs share the router's CPU). Each
 * POST is retried with back-off until it is answered 2xx; a partition's handler resolves, and the bus
 * commits the group's offsets, only once all its events were delivered.
 *
 * Invariants: a partition hands over its next batch only after the previous one was delivered, and
 * the queue POSTs in arrival order one POST at a time, so per partition (hence per conversation)
 * events are POSTed in stream order, never before the earlier ones were answered 2xx (or given up on
 * after `retryForMs`: dropped, counted, logged). Stopping interrupts a retry and fails the queued
 * events: their batches stay uncommitted and are POSTed again after a restart (at-least-once;
 * receivers dedupe by event id).
 */
export class WebhookEndpoint {
  readonly name: string;
  private readonly logger: Logger;
  /** One line per 10 s for failures: every partition's chunk fails while an endpoint is down. */
  private readonly failureLog: RateLimitedLog;
  private stopping = false;
  private readonly stopped = new AbortController();
  private readonly queue: Batcher<RawStreamRecord>;
  /** The current linger window: every batch that arrives in it enters the queue when it closes. */
  private window: Promise<void> | null = null;

  constructor(
    private readonly url: string,
    private readonly settings: WebhookSettings,
    private readonly client: WebhookClient,
    private readonly metrics: MetricsService,
  ) {
    this.name = endpointName(url);
    this.logger = new Logger(`Webhook ${this.name}`);
    this.failureLog = new RateLimitedLog((line) => this.logger.warn(line));
    this.queue = new Batcher((events) => this.deliver(events), settings.batchMax);
  }

  /** The bus handler. Throws only when stopping (the batch comes again after the restart). */
  async handle(batch: RecordBatch): Promise<void> {
    await this.windowClosed();
    await Promise.all(batch.records.map((r) => this.queue.add(r)));
  }

  private windowClosed(): Promise<void> {
    const ms = this.settings.lingerMs ?? 20;
    if (ms <= 0) return Promise.resolve();
    this.window ??= new Promise<void>((resolve) =>
      setTimeout(() => {
        this.window = null;
        resolve();
      }, ms),
    );
    return this.window;
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
