import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { BusBatch, MessageBus } from '../bus/message-bus';
import { ConversationDirectory } from '../directory/conversation-directory';
import { MetricsService } from '../metrics/metrics.service';
import { NewDelivery, OutboxStore, StoredDelivery } from '../outbox/outbox.store';
import { Envelope } from '../protocol/envelope';
import { NodeChannel, PushBatch } from '../session/node-channel';
import { SessionMap } from '../session/session-map';

/**
 * Bus -> outbox -> node channels, one bus batch at a time per partition.
 *
 * Invariants:
 * - Write-ahead: deliveries are in the outbox before anything is pushed, and the bus offset is
 *   committed (by the bus driver, after `route` resolves) only once they are. A crash anywhere in
 *   between redelivers the batch; the outbox's idempotent append turns that into the same seqs.
 * - One PUBLISH per live gateway node per batch, carrying every delivery for that node.
 * - Push failures do not fail the batch: the outbox already holds the deliveries and gateways
 *   refill from it on gaps and on channel resync.
 */
@Injectable()
export class RouterService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(RouterService.name);

  constructor(
    private readonly bus: MessageBus,
    private readonly directory: ConversationDirectory,
    private readonly outbox: OutboxStore,
    private readonly sessions: SessionMap,
    private readonly channel: NodeChannel,
    private readonly metrics: MetricsService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.bus.consume((batch) => this.route(batch));
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.bus.stopConsuming();
  }

  async route(batch: BusBatch): Promise<void> {
    const end = this.metrics.routedBatches.startTimer();
    const conversationIds = [...new Set(batch.messages.map((m) => m.conversation_id))];
    const members = await this.directory.members(conversationIds);
    const deliveries: NewDelivery[] = [];
    for (const m of batch.messages) {
      const users = members.get(m.conversation_id);
      if (!users) {
        this.logger.warn(
          `conversation ${m.conversation_id} vanished before message ${m.id} was routed; dropped`,
        );
        continue;
      }
      const envelope: Envelope = {
        id: m.id,
        conversation_id: m.conversation_id,
        from: m.from,
        ts: m.ts,
        body: m.body,
      };
      for (const userId of users) deliveries.push({ userId, envelope });
    }
    if (deliveries.length === 0) {
      end();
      return;
    }
    const stored = await this.outbox.append(deliveries);
    this.metrics.deliveries.inc(stored.length);
    try {
      await this.push(stored);
    } catch (err) {
      this.metrics.pushFailures.inc();
      this.logger.warn(`push failed, clients will catch up from the outbox: ${(err as Error).message}`);
    }
    end();
  }

  private async push(stored: StoredDelivery[]): Promise<void> {
    const userIds = [...new Set(stored.map((d) => d.userId))];
    const [sessions, live] = await Promise.all([this.sessions.lookup(userIds), this.sessions.liveNodes()]);
    const epoch = this.outbox.epoch();
    const byNode = new Map<string, PushBatch & { index: Map<string, number> }>();
    for (const d of stored) {
      const entries = sessions.get(d.userId);
      if (!entries) continue;
      const nodes = new Set(entries.map((e) => e.node));
      for (const node of nodes) {
        if (!live.has(node)) continue;
        let b = byNode.get(node);
        if (!b) byNode.set(node, (b = { epoch, envelopes: [], deliveries: [], index: new Map() }));
        let e = b.index.get(d.envelope.id);
        if (e === undefined) {
          e = b.envelopes.push(d.envelope) - 1;
          b.index.set(d.envelope.id, e);
        }
        b.deliveries.push({ u: d.userId, s: d.seq, e });
      }
    }
    if (byNode.size === 0) return;
    const out = new Map<string, PushBatch>();
    for (const [node, { epoch: ep, envelopes, deliveries }] of byNode)
      out.set(node, { epoch: ep, envelopes, deliveries });
    await this.channel.publish(out);
  }
}
