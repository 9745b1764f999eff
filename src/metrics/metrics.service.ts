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

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
