import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics; one registry per app instance so several apps can share a process (tests). */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  readonly connections = new Gauge({
    name: 'relay_connections',
    help: 'Open WebSocket connections',
    registers: [this.registry],
  });
  readonly messagesIn = new Counter({
    name: 'relay_messages_acked_total',
    help: 'Messages acknowledged to senders',
    registers: [this.registry],
  });
  readonly sendRejected = new Counter({
    name: 'relay_send_rejected_total',
    help: 'send frames answered with an error, by code (a subset of relay_frames_rejected_total)',
    labelNames: ['code'],
    registers: [this.registry],
  });
  readonly ackLatency = new Histogram({
    name: 'relay_ack_latency_seconds',
    help: 'send frame received -> ack written',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly deliveries = new Counter({
    name: 'relay_deliveries_total',
    help: 'Deliveries written to the outbox by this router',
    registers: [this.registry],
  });
  readonly routedBatches = new Histogram({
    name: 'relay_router_batch_seconds',
    help: 'Time to route one bus batch (outbox write + push)',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly pushFailures = new Counter({
    name: 'relay_push_failures_total',
    help: 'Node channel publishes that failed (clients catch up from the outbox)',
    registers: [this.registry],
  });
  readonly sessionPrefetch = new Counter({
    name: 'relay_router_session_prefetch_total',
    help: 'Recipients whose sessions were looked up during the outbox commit, by outcome: reused, or looked up again after it (a connection of their registration bucket registered meanwhile, or not asked early)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly broadcasts = new Counter({
    name: 'relay_router_broadcast_batches_total',
    help: 'Batches sent to every live node without a session lookup (ROUTER_BROADCAST_PER_NODE recipients per node or more)',
    registers: [this.registry],
  });
  readonly fills = new Counter({
    name: 'relay_outbox_fills_total',
    help: 'Connection catch-ups read from the outbox',
    registers: [this.registry],
  });

  readonly deadLetters = new Counter({
    name: 'relay_dead_letters_total',
    help: 'Bus records the router quarantined in the dead-letter topic/store, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'relay_auth_failures_total',
    help: 'Refused WebSocket authentications, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly upgradesRefused = new Counter({
    name: 'relay_upgrades_refused_total',
    help: 'WebSocket upgrades refused by admission control, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly framesRejected = new Counter({
    name: 'relay_frames_rejected_total',
    help: 'Inbound frames answered with an error (any type), by code',
    labelNames: ['code'],
    registers: [this.registry],
  });
  readonly connectionsClosed = new Counter({
    name: 'relay_connections_closed_by_server_total',
    help: 'Connections the server closed, by close code',
    labelNames: ['code'],
    registers: [this.registry],
  });
  readonly connectionsEnded = new Counter({
    name: 'relay_connections_closed_total',
    help: 'Closed WebSocket connections, by close code and by who closed first (server|client)',
    labelNames: ['code', 'by'],
    registers: [this.registry],
  });
  readonly connects = new Counter({
    name: 'relay_connects_total',
    help: 'WebSocket connections accepted after admission (before hello)',
    registers: [this.registry],
  });
  readonly resumes = new Counter({
    name: 'relay_resumes_total',
    help: 'hello answered with welcome, by outcome: fresh (no cursor), recovered, lost (recovered false)',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly deliverLatency = new Histogram({
    name: 'relay_deliver_latency_seconds',
    help: 'Envelope ts -> stage: router (outbox commit) or gateway (live socket write)',
    labelNames: ['stage'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly consumerLag = new Gauge({
    name: 'relay_kafka_consumer_lag',
    help: 'Records of a partition not yet committed by this router (high watermark - next offset)',
    labelNames: ['partition'],
    registers: [this.registry],
  });
  readonly outboxRows = new Gauge({
    name: 'relay_outbox_rows',
    help: 'Deliveries held in the outbox (expired ones included until purged; SQL: id-range estimate)',
    registers: [this.registry],
  });
  readonly outboxOldestAge = new Gauge({
    name: 'relay_outbox_oldest_age_seconds',
    help: 'Age of the oldest delivery still in the outbox (0 when empty)',
    registers: [this.registry],
  });
  readonly pendingHandshakes = new Gauge({
    name: 'relay_pending_handshakes',
    help: 'Upgraded connections that have not sent hello yet',
    registers: [this.registry],
  });
  readonly contained = new Counter({
    name: 'relay_contained_errors_total',
    help: 'Unexpected exceptions caught at a containment boundary instead of crashing the process',
    labelNames: ['where'],
    registers: [this.registry],
  });

  // ---- webhooks (src/webhooks); `endpoint` is the endpoint's name (wh-<hash of its URL>, logged at start) ----
  readonly webhookEvents = new Counter({
    name: 'relay_webhook_events_total',
    help: 'Events delivered to a webhook endpoint (answered 2xx)',
    labelNames: ['endpoint'],
    registers: [this.registry],
  });
  readonly webhookFailures = new Counter({
    name: 'relay_webhook_failures_total',
    help: 'Webhook POSTs that failed and will be retried, by reason (http_4xx, http_5xx, timeout, network)',
    labelNames: ['endpoint', 'reason'],
    registers: [this.registry],
  });
  readonly webhookDropped = new Counter({
    name: 'relay_webhook_dropped_total',
    help: 'Events given up on after WEBHOOK_RETRY_FOR_MS of failed attempts',
    labelNames: ['endpoint'],
    registers: [this.registry],
  });
  readonly webhookDelay = new Histogram({
    name: 'relay_webhook_delay_seconds',
    help: 'Event ts -> its webhook POST answered 2xx',
    labelNames: ['endpoint'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
