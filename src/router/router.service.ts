import { BeforeApplicationShutdown, Injectable, Logger } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { BusBatch, MessageBus } from '../bus/message-bus';
import { withTimeout } from '../common/deadline';
import { Config } from '../config/config.module';
import { ConversationDirectory } from '../directory/conversation-directory';
import { MetricsService } from '../metrics/metrics.service';
import { NewDelivery, OutboxStore, StoredDelivery } from '../outbox/outbox.store';
import { Envelope } from '../protocol/envelope';
import {
  BusRecord,
  isMessageRecord,
  isReceiptRecord,
  ReceiptRecord,
  recordKind,
} from '../protocol/bus-record';
import { IngressMessage } from '../protocol/envelope';
import { OutboxEntry } from '../protocol/outbox-entry';
import { ReceiptRouting } from './receipt-routing';
import { LiveNodesCache } from './live-nodes.cache';
import { SessionPrefetch } from './session-prefetch';
import { RouterMembers } from './router-members';
import { NodeChannel, PushBatch } from '../session/node-channel';
import { SessionEntry, SessionMap } from '../session/session-map';
import type { Span } from '@opentelemetry/api';
import { endSpan, messageTracer, SpanKind, startSpan, traceparentOf } from '../common/tracing';
import { describeError, isOutageError, poisonReason, rootError, RoutingError } from './failure-kind';

const MAX_APPEND = 5_000;
/** Pause between the attempts of one message while a failed batch is routed one message at a time. */
const RETRY_BASE_MS = 50;
const RETRY_MAX_MS = 1_000;
/** A dependency that does not answer a ping within this long counts as down (same bound as /health). */
const PING_TIMEOUT_MS = 2_000;
/** Ids in logs are cut to this length: a record that bypassed the gateway can carry anything. */
const LOG_ID_MAX = 128;

/**
 * Bus -> outbox -> node channels, one bus batch at a time per partition. Batches arrive through
 * BusTransport and RouterController (`@nestjs/microservices`); the bus driver commits a batch once
 * `route` resolved and redelivers it when `route` threw.
 *
 * Invariants:
 * - Write-ahead: deliveries are in the outbox before anything is pushed, and the bus offset is
 *   committed (by the bus driver, after `route` resolves) only once they are. A crash anywhere in
 *   between redelivers the batch; the outbox's idempotent append turns that into the same seqs.
 * - One PUBLISH per live gateway node per batch, carrying every delivery for that node.
 * - Push failures do not fail the batch: the outbox already holds the deliveries. The nodes the failed
 *   push was meant for get `resync` on the next push that goes through, so they catch up even if no
 *   later delivery reveals the gap (a gateway whose own Redis link stayed up never notices otherwise).
 * - Only envelopes that serialise are written: whatever the outbox takes, every gateway must be able
 *   to send (a body nested beyond the stack would otherwise fail on every push and every replay).
 *
 * Quarantine rule (poison messages vs outages):
 * - A batch that fails is an outage when the error says so (connection, timeout, lock, too many
 *   connections, server state: `isOutageError`) or when the outbox or the directory does not answer
 *   a ping. An outage is rethrown: the bus redelivers the batch, the partition does not move on,
 *   nothing is quarantined, nothing is lost.
 * - Otherwise the batch's messages are routed one at a time, in order, each up to
 *   `router.poisonMaxAttempts` attempts with a short back-off, re-checking for an outage after every
 *   failure (an outage rethrows, as above). A message that still fails is dead-lettered
 *   (`MessageBus.deadLetter`, durable before we go on), counted in `deadLetters{reason}` and logged
 *   once; then the next message is routed. A failed dead-letter write is an outage (rethrown).
 * - Re-routing messages of the batch that went through before the failure is safe: appends are
 *   idempotent (same seqs, nothing new) and gateways drop pushes they already have by seq.
 */
@Injectable()
export class RouterService implements BeforeApplicationShutdown {
  private readonly logger = new Logger(RouterService.name);
  /** Nodes that missed a push and are owed a resync; `missedAll` when we could not even tell which. */
  private readonly missedNodes = new Set<string>();
  private missedAll = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  /** One debug line per routed message: checked once per batch, not per message. */
  private readonly debug: boolean;
  /** Records of kinds this version does not know, skipped so far, by kind (logged on the first of each). */
  private readonly skipped = new Map<string, number>();
  /** Member lists per conversation, dropped on the conversation's membership records. */
  private readonly members: RouterMembers;
  /** The node registry, read at most once a second (and at once for a node it does not know). */
  private readonly liveNodes: LiveNodesCache;

  constructor(
    private readonly bus: MessageBus,
    private readonly directory: ConversationDirectory,
    private readonly outbox: OutboxStore,
    private readonly sessions: SessionMap,
    private readonly channel: NodeChannel,
    private readonly metrics: MetricsService,
    private readonly config: Config,
    private readonly receipts: ReceiptRouting,
  ) {
    this.debug = ['debug', 'verbose'].includes(config.logLevel);
    this.members = new RouterMembers(directory, config.directory.kind === 'builtin');
    this.liveNodes = new LiveNodesCache(() => sessions.liveNodes());
  }

  /** The consumer itself is stopped by BusTransport.close when Nest closes the microservice. */
  beforeApplicationShutdown(): void {
    clearTimeout(this.resyncTimer);
  }

  async route(batch: BusBatch): Promise<void> {
    const end = this.metrics.routedBatches.startTimer();
    try {
      await this.routeMessages(batch.messages);
    } catch (err) {
      if (await this.isOutage(err)) throw rootError(err);
      this.metrics.contained.inc({ where: 'router' });
      this.logger.warn(
        `partition ${batch.partition}: a batch of ${batch.messages.length} messages failed with its dependencies up (${poisonReason(err)}: ${describeError(rootError(err))}); routing it one message at a time`,
      );
      await this.routeOneByOne(batch);
    }
    end();
  }

  /** Quarantine mode: each message in order, a few attempts each; the ones that keep failing are dead-lettered. */
  private async routeOneByOne(batch: BusBatch): Promise<void> {
    const maxAttempts = Math.max(1, this.config.router.poisonMaxAttempts);
    for (const m of batch.messages) {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.routeMessages([m]);
          break;
        } catch (err) {
          if (await this.isOutage(err)) throw rootError(err);
          if (attempt >= maxAttempts) {
            await this.quarantine(m, err, batch.partition, attempt);
            break;
          }
          await sleep(Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (attempt - 1)));
        }
      }
    }
  }

  private async quarantine(m: BusRecord, err: unknown, partition: number, attempts: number) {
    const reason = poisonReason(err);
    const detail = describeError(rootError(err));
    await this.bus.deadLetter(m, `${reason}: ${detail}`, partition); // throws: an outage, the batch comes again
    this.metrics.deadLetters.inc({ reason });
    const id = cut(String(m.id));
    const conversation = cut(String(m.conversation_id));
    this.logger.warn(
      `quarantined ${recordKind(m)} ${id} of conversation ${conversation} (partition ${partition}) after ${attempts} attempts: ${reason}: ${detail}`,
      { msg: id, conversation, partition },
    );
  }

  /** The error names an outage, or a dependency the batch used does not answer. */
  private async isOutage(err: unknown): Promise<boolean> {
    if (isOutageError(err)) return true;
    const pings = await Promise.allSettled([
      withTimeout(this.outbox.ping(), PING_TIMEOUT_MS, 'outbox ping timed out'),
      withTimeout(this.directory.ping(), PING_TIMEOUT_MS, 'directory ping timed out'),
    ]);
    return pings.some((p) => p.status === 'rejected');
  }

  /** routeMessages inside one router span per traced message (tracing on), ended once pushed. */
  private async routeMessages(records: BusRecord[]): Promise<void> {
    const messages: IngressMessage[] = [];
    const receipts: ReceiptRecord[] = [];
    for (const r of records) {
      if (isMessageRecord(r)) messages.push(r);
      else if (isReceiptRecord(r)) receipts.push(r);
      else if (r.kind === 'membership') this.members.forget(r.conversation_id);
      else this.skip(r);
    }
    if (messages.length === 0 && receipts.length === 0) return;
    const tracer = messageTracer();
    if (!tracer) return this.routeStages(messages, receipts, null);
    const spans = new Map<string, Span>();
    for (const m of messages) {
      if (typeof m.trace !== 'string' || spans.has(m.id)) continue;
      spans.set(
        m.id,
        startSpan(
          tracer,
          'relay.router.route',
          SpanKind.CONSUMER,
          { 'messaging.message.id': m.id, 'relay.conversation_id': m.conversation_id },
          m.trace,
        ),
      );
    }
    let failure: unknown;
    try {
      await this.routeStages(messages, receipts, spans.size > 0 ? spans : null);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      for (const span of spans.values()) endSpan(span, failure);
    }
  }

  /** A record of a kind this version does not know: committed past (BUS-RECORDS), counted, logged once per kind. */
  private skip(r: BusRecord): void {
    const kind = recordKind(r);
    const n = (this.skipped.get(kind) ?? 0) + 1;
    if (n === 1 && this.skipped.size >= 100) return; // a bounded set of kinds is remembered
    this.skipped.set(kind, n);
    if (n === 1) this.logger.warn(`skipping bus records of unknown kind "${kind}" (a newer writer's)`);
  }

  /**
   * Directory, outbox (write-ahead), receipts (after the messages they may cover), push. Throws a
   * RoutingError naming the stage that failed.
   */
  private async routeStages(
    messages: IngressMessage[],
    receipts: ReceiptRecord[],
    spans: Map<string, Span> | null,
  ): Promise<void> {
    const conversationIds = [
      ...new Set([...messages.map((m) => m.conversation_id), ...receipts.map((r) => r.conversation_id)]),
    ];
    let members: Map<string, string[] | null>;
    try {
      members = await this.members.members(conversationIds);
    } catch (err) {
      throw new RoutingError('directory', err);
    }
    const deliveries: NewDelivery[] = [];
    for (const m of messages) {
      const users = members.get(m.conversation_id);
      if (!users) {
        this.logger.warn(
          `conversation ${cut(m.conversation_id)} vanished before message ${cut(m.id)} was routed; dropped`,
          { msg: cut(m.id) },
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
      let json: string;
      try {
        json = JSON.stringify(envelope);
      } catch (err) {
        throw new RoutingError('serialize', err);
      }
      for (const userId of users) deliveries.push({ userId, envelope, json });
    }
    // One node alone (the embedded engine) needs no lookup at all; many recipients per node go to
    // every node (`broadcasts`); else the sessions are looked up while the outbox commits (see
    // SessionPrefetch for why that misses nobody).
    const users = new Set(recipients(deliveries));
    const broadcast = this.channel.singleNode() === null && this.broadcasts(users.size);
    const prefetch =
      users.size > 0 && !broadcast && this.channel.singleNode() === null
        ? new SessionPrefetch(this.sessions, users)
        : null;
    // Huge fan-outs are written in several transactions so no single one holds thousands of users'
    // seq locks for long; appends are idempotent, so a crash between them is safe to redeliver.
    const stored: StoredDelivery[] = [];
    try {
      for (let i = 0; i < deliveries.length; i += MAX_APPEND) {
        stored.push(...(await this.outbox.append(deliveries.slice(i, i + MAX_APPEND))));
      }
    } catch (err) {
      throw new RoutingError('outbox', err);
    }
    if (receipts.length > 0) stored.push(...(await this.receipts.route(receipts, members)));
    if (stored.length === 0) return;
    this.metrics.deliveries.inc(stored.length);
    // Send -> outbox commit, once per message that was delivered to anyone.
    const committed = Date.now();
    for (const m of messages) {
      if (!members.get(m.conversation_id)) continue;
      this.metrics.deliverLatency.labels('router').observe(Math.max(0, committed - m.ts) / 1000);
    }
    if (this.debug) {
      for (const m of messages)
        this.logger.debug('routed', { msg: cut(m.id), conversation: cut(m.conversation_id) });
    }
    await this.push(
      stored,
      broadcast ? 'broadcast' : prefetch,
      spans && new Map([...spans].map(([id, span]) => [id, traceparentOf(span)])),
    );
  }

  /**
   * Whether a batch with this many recipients goes to every live node instead of being looked up:
   * from `router.broadcastPerNode` recipients per node on, parsing a delivery a node does not need
   * (a map lookup there) costs less than the session lookup of its user (a Redis command and its
   * reply). The node count is the last one read: an estimate is enough to choose.
   */
  private broadcasts(recipients: number): boolean {
    const perNode = this.config.router.broadcastPerNode ?? 0;
    const nodes = this.liveNodes.lastRead()?.size ?? 0;
    return perNode > 0 && nodes > 0 && recipients >= perNode * nodes;
  }

  /**
   * `targets`: the sessions looked up during the commit, if any, or `broadcast`; `traces`: message
   * id -> traceparent of its router span, carried per envelope to the gateways.
   */
  private async push(
    stored: StoredDelivery[],
    targets: SessionPrefetch | 'broadcast' | null,
    traces: Map<string, string> | null = null,
  ): Promise<void> {
    const single = this.channel.singleNode();
    if (single !== null)
      return this.publish(new Map([[single, this.batchOf(stored, traces, true)]]), new Set([single]));
    if (targets === 'broadcast') return this.broadcast(stored, traces);
    const prefetch = targets;
    const userIds = [...new Set(stored.map((d) => d.userId))];
    let sessions: Map<string, SessionEntry[]>;
    let live: Set<string>;
    try {
      const cached = this.liveNodes.fresh();
      [sessions, live] = await Promise.all([
        prefetch
          ? prefetch.lookup(userIds).then((r) => {
              this.metrics.sessionPrefetch.labels('reused').inc(userIds.length - r.again);
              if (r.again > 0) this.metrics.sessionPrefetch.labels('looked_up_again').inc(r.again);
              return r.sessions;
            })
          : this.sessions.lookup(userIds),
        cached ? Promise.resolve(cached) : this.liveNodes.refresh(),
      ]);
      if (cached) live = await this.liveNodes.nodesFor(cached, namedNodes(sessions));
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
        if (e === undefined) {
          index.set(d.envelope.id, (e = b.envelopes.push(d.envelope) - 1));
          if (traces) (b.traces ??= [])[e] = traces.get(d.envelope.id) ?? null;
        }
        b.deliveries.push({ u: d.userId, s: d.seq, e });
      }
    }
    await this.publish(out, live);
  }

  /**
   * All deliveries in one batch, for the only node (the embedded engine; `inProcess`: the outbox's
   * JSON rides along) or for every node (`broadcast`): no session lookup and no per-node split; a
   * gateway skips users without a connection there, and the outbox serves those when they come.
   * Deliveries of one message are adjacent (append keeps input order), so an envelope is usually
   * found as the previous delivery's.
   */
  private batchOf(
    stored: StoredDelivery[],
    traces: Map<string, string> | null,
    inProcess: boolean,
  ): PushBatch {
    const batch: PushBatch = { epoch: this.outbox.epoch(), envelopes: [], deliveries: [] };
    const index = new Map<string, number>(); // message id -> index
    let last: OutboxEntry | null = null;
    let e = -1;
    for (const d of stored) {
      if (d.envelope !== last) {
        last = d.envelope;
        const known = index.get(last.id);
        if (known !== undefined) e = known;
        else {
          index.set(last.id, (e = batch.envelopes.push(last) - 1));
          if (traces) (batch.traces ??= [])[e] = traces.get(last.id) ?? null;
          if (inProcess && d.json !== undefined) (batch.json ??= [])[e] = d.json;
        }
      }
      batch.deliveries.push({ u: d.userId, s: d.seq, e });
    }
    return batch;
  }

  /**
   * Every delivery to every live node; each gateway writes those of the users it holds and skips the
   * rest. The node set is read after the commit, never taken from the cache: a gateway registers
   * before it accepts a connection, and a connection registers before it replays the outbox, so a
   * connection missing from this push was registered after the commit and finds the deliveries in
   * its replay (the same argument as the single-node push, per node).
   */
  private async broadcast(stored: StoredDelivery[], traces: Map<string, string> | null): Promise<void> {
    let live: Set<string>;
    try {
      live = await this.liveNodes.readNow();
    } catch (err) {
      this.missedAll = true;
      this.pushFailed(`live node read failed: ${(err as Error).message}`);
      return;
    }
    this.metrics.broadcasts.inc();
    const batch = this.batchOf(stored, traces, false);
    await this.publish(new Map([...live].map((node) => [node, batch])), live);
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
      void this.liveNodes
        .refresh()
        .then((live) => this.publish(new Map(), live))
        .catch((err: Error) => this.pushFailed(`resync failed: ${err.message}`));
    }, 1_000);
    this.resyncTimer.unref();
  }
}

function* recipients(deliveries: NewDelivery[]): Iterable<string> {
  for (const d of deliveries) yield d.userId;
}

function* namedNodes(sessions: Map<string, SessionEntry[]>): Iterable<string> {
  for (const entries of sessions.values()) for (const e of entries) yield e.node;
}

function cut(id: string): string {
  return id.length > LOG_ID_MAX ? `${id.slice(0, LOG_ID_MAX)}...` : id;
}
