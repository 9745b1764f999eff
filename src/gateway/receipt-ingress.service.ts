import { Injectable, Logger } from '@nestjs/common';
import { MessageBus } from '../bus/message-bus';
import { Batcher } from '../common/batcher';
import { newMessageId } from '../common/ids';
import { Config } from '../config/config.module';
import { ConversationDirectory } from '../directory/conversation-directory';
import { decodeCursor } from '../outbox/cursor';
import { OutboxStore } from '../outbox/outbox.store';
import { STREAM_SCHEMA_VERSION } from '../protocol/stream-records';
import { ReceiptRecord } from '../protocol/bus-record';
import { ClientFrame } from '../protocol/frames';
import { Connection } from './connection';
import { Containment } from './containment';
import { MetricsService } from '../metrics/metrics.service';
import { TokenBucket } from './token-bucket';

type ReadFrame = Extract<ClientFrame, { type: 'read' }>;
type ConfirmFrame = Extract<ClientFrame, { type: 'confirm' }>;
type MarkerKind = ReceiptRecord['marker'];

/** Conversations whose member lists are cached on this node at most. */
const MEMBERSHIP_CACHE_MAX = 10_000;
/** Receipt publishes in flight on this node at most (one per member, conversation and kind). */
const IN_FLIGHT_MAX = 100_000;

interface Slot {
  /** The newest seq that arrived while the publish was in flight (0: none): published right after it. */
  next: number;
}

/**
 * v1.1 receipts at the gateway: `read` frames and delivered markers derived from `confirm`, turned
 * into receipt records on the bus (partitioned by conversation, like its messages).
 *
 * Invariants:
 * - Bounded per member: a `read` costs a token of the connection's receipt bucket
 *   (RECEIPTS_RATE_PER_SEC, burst 4x) before anything else; over budget it is answered
 *   `rate_limited`. Per (member, conversation, kind) at most one publish is in flight on this node;
 *   markers that arrive meanwhile collapse into the newest (the router drops any that would not move
 *   the stored marker forward, for all nodes). At most IN_FLIGHT_MAX publishes are in flight.
 * - Membership without a directory round trip per frame: member lists are cached for
 *   DIRECTORY_CACHE_TTL_MS (the directory's own cache rule). Only a cache hit that admits counts; a
 *   refusal (`forbidden`, `not_found`) is checked against the directory again, so a member just added
 *   is never refused for the length of the TTL. A removed member may still mark for up to the TTL;
 *   the router checks membership again before anything is stored.
 * - `confirm` needs no membership check: the connection only tracked messages it was delivered.
 */
@Injectable()
export class ReceiptIngressService {
  private readonly logger = new Logger(ReceiptIngressService.name);
  private readonly boundary: Containment;
  private readonly buckets = new WeakMap<Connection, TokenBucket>();
  private readonly cache = new Map<string, { members: Set<string>; until: number }>();
  private readonly inFlight = new Map<string, Slot>();
  private readonly lookups = new Batcher<string, string[] | null>(async (ids) => {
    const found = await this.directory.members([...new Set(ids)]);
    return ids.map((id) => found.get(id) ?? null);
  });

  constructor(
    private readonly config: Config,
    private readonly bus: MessageBus,
    private readonly directory: ConversationDirectory,
    private readonly outbox: OutboxStore,
    metrics: MetricsService,
  ) {
    this.boundary = new Containment(metrics, this.logger);
  }

  handleRead(conn: Connection, frame: ReadFrame): void {
    let bucket = this.buckets.get(conn);
    if (!bucket) {
      const rate = this.config.receipts.readRatePerSec;
      this.buckets.set(conn, (bucket = new TokenBucket(rate, rate * 4)));
    }
    if (!bucket.take(Date.now())) return conn.sendError('rate_limited', 'too many read frames, slow down');
    const { conversation_id: conversationId, seq } = frame.payload;
    void this.checkMember(conn.userId, conversationId)
      .then((verdict) => {
        if (verdict === 'not_found') {
          return conn.sendError('not_found', `conversation ${conversationId} does not exist`);
        }
        if (verdict === 'forbidden') {
          return conn.sendError('forbidden', `you are not a member of conversation ${conversationId}`);
        }
        this.mark(conn, conversationId, 'read', seq);
      })
      .catch((err: unknown) => {
        this.logger.warn(`read refused: ${(err as Error).message}`, { conn: conn.id });
        conn.sendError('unavailable', 'service temporarily unavailable, send read again');
      });
  }

  /** A confirm covers deliveries up to its cursor: delivered markers for the conversations they were in. */
  handleConfirm(conn: Connection, frame: ConfirmFrame): void {
    if (!this.config.receipts.delivered) return;
    const cursor = decodeCursor(frame.msg_id);
    if (!cursor || cursor.epoch !== this.outbox.epoch()) return;
    for (const [conversationId, seq] of conn.delivered.confirmed(cursor.seq)) {
      this.mark(conn, conversationId, 'delivered', seq);
    }
  }

  private async checkMember(
    userId: string,
    conversationId: string,
  ): Promise<'ok' | 'forbidden' | 'not_found'> {
    const now = Date.now();
    const hit = this.cache.get(conversationId);
    if (hit && hit.until > now && hit.members.has(userId)) return 'ok';
    const members = await this.lookups.add(conversationId);
    if (!members) {
      this.cache.delete(conversationId);
      return 'not_found';
    }
    const ttl = this.config.directory.cacheTtlMs;
    if (ttl > 0) {
      this.cache.delete(conversationId); // re-inserted last: the oldest entry is evicted first
      if (this.cache.size >= MEMBERSHIP_CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(conversationId, { members: new Set(members), until: now + ttl });
    }
    return members.includes(userId) ? 'ok' : 'forbidden';
  }

  /** Publishes the marker; while one of the same key is in flight, only the newest waits for it. */
  private mark(conn: Connection, conversationId: string, kind: MarkerKind, seq: number): void {
    const key = `${kind}\u0000${conversationId}\u0000${conn.userId}`;
    const slot = this.inFlight.get(key);
    if (slot) {
      slot.next = Math.max(slot.next, seq);
      return;
    }
    if (this.inFlight.size >= IN_FLIGHT_MAX) {
      if (kind === 'read')
        conn.sendError('rate_limited', 'too many receipts in flight, send read again later');
      return;
    }
    this.publish(conn, key, conversationId, kind, seq);
  }

  private publish(
    conn: Connection,
    key: string,
    conversationId: string,
    kind: MarkerKind,
    seq: number,
  ): void {
    const slot: Slot = { next: 0 };
    this.inFlight.set(key, slot);
    const now = Date.now();
    const record: ReceiptRecord = {
      schema_version: STREAM_SCHEMA_VERSION,
      kind: 'receipt',
      id: newMessageId(now),
      conversation_id: conversationId,
      user_id: conn.userId,
      marker: kind,
      seq,
      ts: now,
    };
    const settle = () => {
      this.inFlight.delete(key);
      if (slot.next > seq) this.publish(conn, key, conversationId, kind, slot.next);
    };
    this.bus.publishReceipt(record).then(settle, (err: Error) => {
      this.logger.warn(`receipt publish failed: ${err.message}`, { conn: conn.id });
      this.boundary.guard('receipt', conn, () => {
        if (kind === 'read') conn.sendError('unavailable', 'message bus unavailable, send read again');
      });
      this.inFlight.delete(key);
      if (slot.next > 0) this.publish(conn, key, conversationId, kind, Math.max(slot.next, seq));
    });
  }
}
