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
    help: 'send frames answered with an error',
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
  readonly fills = new Counter({
    name: 'relay_outbox_fills_total',
    help: 'Connection catch-ups read from the outbox',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
