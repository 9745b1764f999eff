import { Injectable, Logger } from '@nestjs/common';
import { Config } from '../config/config.module';
import { Connection } from './connection';
import {
  deliveryFrame,
  entryPayloadJson,
  entryTs,
  isReceiptEntry,
  OutboxEntry,
} from '../protocol/outbox-entry';
import { ConnectionRegistry } from './connection.registry';
import { encodeCursor } from '../outbox/cursor';
import { NodeChannel, NodeSubscriber, PushBatch } from '../session/node-channel';
import { SessionMap } from '../session/session-map';
import { MetricsService } from '../metrics/metrics.service';
import { Containment } from './containment';
import { bodyPreview, TailHub } from './tail.hub';
import type { Span, Tracer } from '@opentelemetry/api';
import { endSpan, messageTracer, SpanKind, startSpan } from '../common/tracing';

const RESYNC_CONCURRENCY = 64;

/**
 * Bus -> sockets on this node: receives the router's per-node batches and hands them to connections.
 *
 * Containment: a batch is handled inside a boundary (the channel's callback must never see an
 * exception). A failure while pushing to one connection closes that connection 1011 (it resumes from
 * its cursor) and the batch goes on; a failure of the batch itself triggers a resync, so every
 * connection catches up from the outbox. Both are logged and counted in `contained{where}`.
 */
@Injectable()
export class EgressService implements NodeSubscriber {
  private readonly logger = new Logger(EgressService.name);
  private resyncing = false;
  private readonly gatewayLatency: { observe(seconds: number): void };
  private resyncAgain = false;
  private readonly boundary: Containment;

  constructor(
    private readonly config: Config,
    private readonly channel: NodeChannel,
    private readonly sessions: SessionMap,
    private readonly registry: ConnectionRegistry,
    private readonly metrics: MetricsService,
    // Optional for unit tests that build the service by hand (an idle hub: nobody tails).
    private readonly tail: TailHub = new TailHub(),
  ) {
    this.boundary = new Containment(metrics, this.logger);
    this.gatewayLatency = metrics.deliverLatency.labels('gateway'); // resolved once, not per delivery
  }

  /** Subscribe before any session is registered: a delivery routed to us must find us listening. */
  async start(): Promise<void> {
    await this.channel.subscribe(this.config.nodeId, this);
    await this.sessions.registerNode(this.config.nodeId);
  }

  async stop(): Promise<void> {
    await this.sessions.unregisterNode(this.config.nodeId).catch(() => undefined);
    await this.channel.unsubscribe();
  }

  onBatch(batch: PushBatch): void {
    // Tracing on and the router traced this batch: one egress span per traced envelope.
    const tracer = batch.traces ? messageTracer() : null;
    const spans = tracer ? this.egressSpans(tracer, batch) : null;
    let failure: unknown;
    try {
      if (batch.resync) this.onResync();
      this.deliver(batch);
    } catch (err) {
      failure = err;
      this.boundary.contain('egress.batch', err);
      // Whatever this batch carried is in the outbox: let every connection catch up from there.
      this.onResync();
    }
    if (spans) for (const span of spans) endSpan(span, failure);
  }

  private egressSpans(tracer: Tracer, batch: PushBatch): Span[] {
    const spans: Span[] = [];
    batch.envelopes.forEach((envelope, i) => {
      const parent = batch.traces?.[i];
      if (typeof parent !== 'string') return;
      const attributes = {
        'messaging.message.id': String(envelope?.id),
        'relay.node_id': this.config.nodeId,
      };
      spans.push(startSpan(tracer, 'relay.gateway.deliver', SpanKind.CONSUMER, attributes, parent));
    });
    return spans;
  }

  private deliver(batch: PushBatch): void {
    // Serialise each envelope once per node, however many local connections receive it, and let each
    // socket flush all of its frames from this batch in one write.
    const json: (string | undefined)[] = new Array(batch.envelopes.length);
    const corked = new Set<Connection>();
    const now = Date.now();
    try {
      for (const d of batch.deliveries) {
        // Most users have one connection: no array per delivery for them.
        const conns = this.registry.connectionsOf(d.u);
        // One node alone gets every delivery (the embedded engine): a user without a connection here
        // reads it from the outbox when they come, and the tail shows live writes only.
        if (conns === undefined) continue;
        if (this.tail.active) this.publishToTail(batch, d);
        // Send -> live write, once per delivery (a connection still filling writes it a little later).
        const entry = batch.envelopes[d.e];
        this.gatewayLatency.observe(Math.max(0, now - entryTs(entry)) / 1000);
        const frame = deliveryFrame(
          encodeCursor(batch.epoch, d.s),
          entry,
          (json[d.e] ??= batch.json?.[d.e] ?? entryPayloadJson(entry)),
        );
        if (!Array.isArray(conns)) this.pushTo(conns as Connection, d.s, frame, entry, corked);
        else for (const conn of conns as readonly Connection[]) this.pushTo(conn, d.s, frame, entry, corked);
      }
    } finally {
      for (const conn of corked) conn.uncork();
    }
  }

  /** One connection's copy; a failure costs that connection only (contained, the batch goes on). */
  private pushTo(conn: Connection, seq: number, frame: string, entry: OutboxEntry, corked: Set<Connection>) {
    try {
      if (!corked.has(conn)) {
        conn.cork();
        corked.add(conn);
      }
      conn.push(seq, frame, entry);
    } catch (err) {
      this.boundary.contain('egress.connection', err, conn, { msg: entry?.id });
    }
  }

  private publishToTail(batch: PushBatch, d: PushBatch['deliveries'][number]): void {
    const env = batch.envelopes[d.e];
    if (isReceiptEntry(env)) return; // the console tails messages
    if (!this.tail.wants(env.conversation_id, d.u)) return;
    this.tail.publish({
      kind: 'delivery',
      at: Date.now(),
      conversation: env.conversation_id,
      user: d.u,
      msg_id: env.id,
      from: env.from,
      seq: d.s,
      body: bodyPreview(env.body),
    });
  }

  /**
   * Refills every connection from the outbox, at most RESYNC_CONCURRENCY at a time so a Redis blip on
   * a node with many connections does not turn into a burst of outbox reads. A resync requested while
   * one runs is queued (once) and starts over with the connections open then.
   */
  onResync(): void {
    if (this.resyncing) {
      this.resyncAgain = true;
      return;
    }
    this.resyncing = true;
    void this.refillAll()
      .catch((err: unknown) => this.boundary.contain('egress.resync', err))
      .finally(() => {
        this.resyncing = false;
        if (this.resyncAgain) {
          this.resyncAgain = false;
          this.onResync();
        }
      });
  }

  private async refillAll(): Promise<void> {
    const conns = [...this.registry.all];
    this.logger.warn(`node channel resync: refilling ${conns.length} connections from the outbox`);
    let next = 0;
    const worker = async () => {
      while (next < conns.length) {
        const conn = conns[next++];
        this.metrics.fills.inc();
        await conn.resync();
      }
    };
    await Promise.all(Array.from({ length: Math.min(RESYNC_CONCURRENCY, conns.length) }, worker));
  }
}
