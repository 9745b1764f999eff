import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { BusBatch, MessageBus } from '../bus/message-bus';
import { ConversationDirectory } from '../directory/conversation-directory';
import { MetricsService } from '../metrics/metrics.service';
import { NewDelivery, OutboxStore, StoredDelivery } from '../outbox/outbox.store';
import { Envelope } from '../protocol/envelope';
import { NodeChannel, PushBatch } from '../session/node-channel';
import { SessionEntry, SessionMap } from '../session/session-map';

const MAX_APPEND = 5_000;

/**
 * Bus -> outbox -> node channels, one bus batch at a time per partition.
 *
 * Invariants:
 * - Write-ahead: deliveries are in the outbox before anything is pushed, and the bus offset is
 *   committed (by the bus driver, after `route` resolves) only once they are. A crash anywhere in
 *   between redelivers the batch; the outbox's idempotent append turns that into the same seqs.
 * - One PUBLISH per live gateway node per batch, carrying every delivery for that node.
 * - Push failures do not fail the batch: the outbox already holds the deliveries. The nodes the failed
 *   push was meant for get `resync` on the next push that goes through, so they catch up even if no
 *   later delivery reveals the gap (a gateway whose own Redis link stayed up never notices otherwise).
 */
@Injectable()
export class RouterService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(RouterService.name);
  /** Nodes that missed a push and are owed a resync; `missedAll` when we could not even tell which. */
  private readonly missedNodes = new Set<string>();
  private missedAll = false;
  private resyncTimer: NodeJS.Timeout | undefined;

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
    clearTimeout(this.resyncTimer);
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
    // Huge fan-outs are written in several transactions so no single one holds thousands of users'
    // seq locks for long; appends are idempotent, so a crash between them is safe to redeliver.
    const stored: StoredDelivery[] = [];
    for (let i = 0; i < deliveries.length; i += MAX_APPEND) {
      stored.push(...(await this.outbox.append(deliveries.slice(i, i + MAX_APPEND))));
    }
    this.metrics.deliveries.inc(stored.length);
    await this.push(stored);
    end();
  }

  private async push(stored: StoredDelivery[]): Promise<void> {
    const userIds = [...new Set(stored.map((d) => d.userId))];
    let sessions: Map<string, SessionEntry[]>;
    let live: Set<string>;
    try {
      [sessions, live] = await Promise.all([this.sessions.lookup(userIds), this.sessions.liveNodes()]);
    } catch (err) {
      this.missedAll = true;
      this.pushFailed(`session lookup failed: ${(err as Error).message}`);
      return;
    }
    const epoch = this.outbox.epoch();
    const out = new Map<string, PushBatch>();
    const envelopeIndex = new Map<string, Map<string, number>>(); // node -> message id -> index
    for (const d of stored) {
      const entries = sessions.get(d.userId);
      if (!entries) continue;
      for (const node of new Set(entries.map((e) => e.node))) {
        if (!live.has(node)) continue;
        let b = out.get(node);
        let index = envelopeIndex.get(node);
        if (!b || !index) {
          out.set(node, (b = { epoch, envelopes: [], deliveries: [] }));
          envelopeIndex.set(node, (index = new Map()));
        }
        let e = index.get(d.envelope.id);
        if (e === undefined) index.set(d.envelope.id, (e = b.envelopes.push(d.envelope) - 1));
        b.deliveries.push({ u: d.userId, s: d.seq, e });
      }
    }
    await this.publish(out, live);
  }

  /** Publishes the batches, adding `resync` for nodes owed one; remembers the nodes a failure missed. */
  private async publish(out: Map<string, PushBatch>, live: Set<string>): Promise<void> {
    const resync = this.missedAll ? [...live] : [...this.missedNodes].filter((node) => live.has(node));
    for (const node of resync) {
      const b = out.get(node) ?? { epoch: this.outbox.epoch(), envelopes: [], deliveries: [] };
      out.set(node, { ...b, resync: true });
    }
    if (out.size === 0) return;
    try {
      await this.channel.publish(out);
      for (const node of resync) this.missedNodes.delete(node);
      this.missedAll = false;
    } catch (err) {
      for (const node of out.keys()) this.missedNodes.add(node);
      this.pushFailed(`publish failed: ${(err as Error).message}`);
    }
  }

  /** Without further traffic nothing would carry the resync: retry it on its own, once a second. */
  private pushFailed(why: string): void {
    this.metrics.pushFailures.inc();
    this.logger.warn(`${why}; gateways will catch up from the outbox`);
    if (this.resyncTimer) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      void this.sessions
        .liveNodes()
        .then((live) => this.publish(new Map(), live))
        .catch((err: Error) => this.pushFailed(`resync failed: ${err.message}`));
    }, 1_000);
    this.resyncTimer.unref();
  }
}
