import { BeforeApplicationShutdown, Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import { IncomingMessage } from 'node:http';
import { Config } from '../../config/config.module';
import { NodeStatus } from '../../health/node-status';
import { decodeCursor, type Cursor } from '../../outbox/cursor';
import { CLOSE, echoableRef } from '../../protocol/frames';
import { SessionMap } from '../../session/session-map';
import { AdmissionService } from '../admission.service';
import { AuthService, Principal } from '../auth.service';
import { GatewayServer } from '../gateway.server';
import { TokenBucket } from '../token-bucket';
import { PollError } from './poll-error';
import { PollSessionClaims, PollSessionIds } from './poll-session-id';
import { AnswerCollector, PollSink, Take } from './poll.sink';

/** How long a POST waits for the acks of its sends before answering (later ones go to the polls). */
const ANSWER_WAIT_MS = 10_000;
/** Close code of a copy replaced because its client's cursor shows it missed a response. */
const REPLACED = 4000;

/** This node's copy of a poll session: one Connection behind a PollSink. */
interface LocalSession {
  claims: PollSessionClaims;
  sink: PollSink;
  /** Settles once the copy's hello is answered; rejects with the PollError to answer. */
  ready: Promise<void>;
  epoch: string;
  /** Highest message seq handed to a poll (or the resume position): the client's cursor is at least this. */
  handed: number;
  lastPollAt: number;
  polling: number;
  /** Requests over budget answer 429 (the frame budget of a WebSocket, per request). */
  budget: TokenBucket;
}

/** What the open request answers. */
export interface Opened {
  sid: string;
  frames: string[];
}

/**
 * The long-polling transport (docs/protocol.md "Long polling"). A session is a Connection whose
 * socket is a PollSink, wired through GatewayServer exactly like an upgraded WebSocket: the same
 * admission, frame dispatch, rate limits, resume, registry, egress and heartbeat.
 *
 * Invariants:
 * - Session ids are self-describing signed tokens; a node serves one with a local copy, created from
 *   the cursor the request carries when there is none (another node opened it, this node restarted,
 *   or the copy was replaced). The outbox is the source of truth, so any copy continues the client's
 *   cursor without loss (hello from the cursor) or duplicates (PollSink's floor).
 * - A copy is registered in the session map as `poll:<key>:<node>:<n>` while it lives, so the router
 *   pushes to it like to a socket; a session is alive while any node holds a copy. A copy without a
 *   poll for 2 × POLL_TIMEOUT_MS ends (its user goes offline on this node); once no copy remains,
 *   the id answers 410.
 * - A poll whose cursor is behind what this copy handed out (a response was lost) replaces the copy,
 *   which resumes from that cursor.
 * - `sessions` is touched only on the event loop; a copy is in it from creation (before its hello is
 *   answered, so concurrent requests wait on `ready` instead of creating a second copy) until it ends.
 */
@Injectable()
export class PollService implements BeforeApplicationShutdown, OnModuleDestroy {
  private readonly logger = new Logger(PollService.name);
  private readonly ids: PollSessionIds;
  private readonly sessions = new Map<string, LocalSession>();
  /**
   * Sessions whose copy here closed for a transient reason (too much queued, outbox error, replaced),
   * until when the next request may recreate it without finding it in the session map.
   */
  private readonly resumable = new Map<string, number>();
  /** Opens in progress per user (between the cap check and the copy's registration). */
  private readonly opening = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;
  private serial = 0;

  constructor(
    private readonly config: Config,
    private readonly auth: AuthService,
    private readonly admission: AdmissionService,
    private readonly gateway: GatewayServer,
    private readonly sessionMap: SessionMap,
    private readonly status: NodeStatus,
  ) {
    this.ids = new PollSessionIds(config.poll.sessionSecret, config.auth.jwtSecret);
    this.sweeper = setInterval(() => this.endIdle(), Math.max(50, config.poll.timeoutMs / 2));
    this.sweeper.unref();
  }

  /** Local copies (tests, metrics). */
  get size(): number {
    return this.sessions.size;
  }

  /** `POST /v1/poll/open`: a new session resuming after `lastMsgId`; answers its sid and `welcome`. */
  async open(req: IncomingMessage, lastMsgId: string | undefined): Promise<Opened> {
    this.refuseWhileDraining();
    const principal = await this.authenticate(req);
    const user = principal.userId;
    // Opens of this user still in progress here count too, so concurrent opens cannot overshoot.
    const live = (await this.liveKeys(user)).size + (this.opening.get(user) ?? 0);
    if (live >= this.config.poll.maxSessionsPerUser) {
      throw new PollError(
        'rate_limited',
        `at most ${this.config.poll.maxSessionsPerUser} long-polling sessions per user`,
      );
    }
    this.opening.set(user, (this.opening.get(user) ?? 0) + 1);
    try {
      const { sid, claims } = this.ids.issue(user);
      const session = await this.startCopy(req, claims, lastMsgId ?? null, false);
      const welcome = await session.ready.then(() => this.welcomeOf(session));
      return { sid, frames: [welcome] };
    } finally {
      const n = (this.opening.get(user) ?? 1) - 1;
      if (n > 0) this.opening.set(user, n);
      else this.opening.delete(user);
    }
  }

  /** `GET /v1/poll/:sid?cursor=`: the frames after the cursor, held until there are some or the poll times out. */
  async poll(req: IncomingMessage, sid: string, rawCursor: unknown, signal: AbortSignal): Promise<string[]> {
    this.refuseWhileDraining();
    const claims = await this.claimsFor(req, sid);
    const cursor = parseCursor(rawCursor, false);
    let session: LocalSession;
    if (cursor) session = await this.copyFor(req, claims, cursor, rawCursor as string);
    else {
      // No cursor: only this node's open copy can continue (from what it handed out).
      const local = this.sessions.get(claims.key);
      if (local) await local.ready;
      if (!local?.sink.isOpen) {
        throw new PollError('bad_frame', 'cursor is required (this node holds no copy of the session)');
      }
      session = local;
    }
    this.spend(session);
    if (cursor) session.sink.advanceFloor(cursor.seq);
    session.polling++;
    session.lastPollAt = Date.now();
    let take: Take;
    try {
      const { timeoutMs, maxResponseFrames, maxResponseBytes } = this.config.poll;
      take = await session.sink.take(timeoutMs, maxResponseFrames, maxResponseBytes, signal);
    } finally {
      session.polling--;
      session.lastPollAt = Date.now();
    }
    if (take.lastSeq > session.handed) session.handed = take.lastSeq;
    if (take.frames.length === 0 && !session.sink.isOpen) this.throwClosed(session.sink.closeCode);
    return take.frames;
  }

  /**
   * `POST /v1/poll/:sid`: client frames, dispatched in order as if read from a socket; answers what
   * they produced and the `ack`/`error` of their sends (waiting up to ANSWER_WAIT_MS for those).
   */
  async post(req: IncomingMessage, sid: string, rawCursor: unknown, body: unknown): Promise<string[]> {
    this.refuseWhileDraining();
    const claims = await this.claimsFor(req, sid);
    const frames = this.framesOf(body);
    const cursor = parseCursor(rawCursor, false);
    // An open copy takes the frames whatever the cursor says: a POST racing a poll's answer carries
    // an older cursor than the copy handed out, and that is no reason to replace the copy.
    let session = this.sessions.get(claims.key);
    if (session) await session.ready;
    if (!session?.sink.isOpen) {
      if (!cursor) {
        throw new PollError(
          'session_expired',
          'this node holds no copy of the session; repeat with ?cursor=',
        );
      }
      session = await this.copyFor(req, claims, cursor, rawCursor as string);
    }
    this.spend(session);
    const { sink } = session;
    const collector = new AnswerCollector();
    sink.collect(collector, () => {
      for (const { text, ref } of frames) {
        // Expected before dispatch: an answer written synchronously (a refusal) is claimed at once.
        if (ref !== undefined) collector.expect(ref);
        this.gateway.onFrame(sink, Buffer.from(text), false);
      }
    });
    try {
      await collector.settled(ANSWER_WAIT_MS, sink.ended);
    } finally {
      sink.release(collector);
    }
    // Closed for the client's fault (expired token, flooding, too large): say so. Closed before
    // answering every send (slow consumer, outbox error, drain): an error status makes the client
    // reconnect and send them again with the same refs.
    const fatal = [CLOSE.unauthorized, CLOSE.flooding, CLOSE.tooLarge] as number[];
    if (!sink.isOpen && (fatal.includes(sink.closeCode) || collector.unanswered > 0)) {
      this.throwClosed(sink.closeCode);
    }
    return collector.frames;
  }

  /** `DELETE /v1/poll/:sid`: ends this node's copy (others end when their polls stop). */
  async end(req: IncomingMessage, sid: string): Promise<void> {
    const claims = await this.claimsFor(req, sid);
    this.sessions.get(claims.key)?.sink.close(1000, 'closed by client');
  }

  /** SIGTERM: every waiting poll answers 503 and every copy closes like a draining socket (1012). */
  beforeApplicationShutdown(): void {
    this.status.startDraining();
    for (const s of [...this.sessions.values()]) s.sink.close(CLOSE.draining, 'server draining');
  }

  onModuleDestroy(): void {
    clearInterval(this.sweeper);
  }

  private refuseWhileDraining(): void {
    if (this.status.draining) throw new PollError('unavailable', 'server draining, retry');
  }

  private async authenticate(req: IncomingMessage): Promise<Principal> {
    const result = await this.auth.authenticate(req);
    if ('failure' in result) throw new PollError('unauthorized', `unauthorized: ${result.failure}`);
    return result.principal;
  }

  private async claimsFor(req: IncomingMessage, sid: string): Promise<PollSessionClaims> {
    const principal = await this.authenticate(req);
    const claims = this.ids.verify(sid);
    if (!claims) throw new PollError('not_found', 'no such long-polling session');
    if (claims.userId !== principal.userId) {
      throw new PollError('forbidden', 'the session belongs to another user');
    }
    return claims;
  }

  /**
   * The local copy that can continue from `cursor`: the existing one if the client has seen
   * everything it handed out, else a new one resumed from the cursor (after checking the session
   * still lives somewhere when this node had none).
   */
  private async copyFor(
    req: IncomingMessage,
    claims: PollSessionClaims,
    cursor: Cursor,
    rawCursor: string,
  ): Promise<LocalSession> {
    let session = this.sessions.get(claims.key);
    if (session) {
      await session.ready;
      if (session.sink.isOpen && cursor.epoch === session.epoch && cursor.seq >= session.handed) {
        return session;
      }
      // A lost response, another store generation, or a copy that closed (slow consumer, outbox
      // error): resume from what the client actually has.
      session.sink.close(REPLACED, 'replaced');
      if (this.sessions.get(claims.key) === session) this.sessions.delete(claims.key);
    } else if (!this.resumable.has(claims.key) && !(await this.liveKeys(claims.userId)).has(claims.key)) {
      throw new PollError('session_expired', 'the long-polling session ended; open a new one');
    }
    session = this.sessions.get(claims.key) ?? (await this.startCopy(req, claims, rawCursor, true));
    await session.ready;
    return session;
  }

  /**
   * Creates this node's copy: admission like an upgrade (caps, auth), then the gateway's own wiring
   * and a hello from `cursor`. A copy `resuming` a session that could not resume without loss answers 410 (the client opens
   * a new session and sees `recovered:false` in its welcome).
   */
  private async startCopy(
    req: IncomingMessage,
    claims: PollSessionClaims,
    cursor: string | null,
    resuming: boolean,
  ): Promise<LocalSession> {
    const verdict = await this.admission.admit(req).catch((err: Error) => {
      this.logger.error(`admission failed: ${err.message}`);
      throw new PollError('unavailable', 'admission unavailable, retry');
    });
    if (!verdict.ok) throw refusal(verdict.status, verdict.reason);
    if (verdict.principal.userId !== claims.userId) {
      throw new PollError('forbidden', 'the session belongs to another user');
    }
    const racing = this.sessions.get(claims.key);
    if (racing) {
      // Another request created the copy while we were admitted: use it, give the slot back.
      return racing;
    }
    const sink = new PollSink();
    const id = `poll:${claims.key}:${this.config.nodeId}:${++this.serial}`;
    const { userId, expiresAt } = verdict.principal;
    this.gateway.attach(sink, id, userId, expiresAt, verdict.ip);
    const session: LocalSession = {
      claims,
      sink,
      ready: Promise.resolve(),
      epoch: '',
      handed: 0,
      lastPollAt: Date.now(),
      polling: 0,
      budget: new TokenBucket(this.config.gateway.frameRatePerSec, this.config.gateway.frameBurst),
    };
    this.sessions.set(claims.key, session);
    sink.once('close', (code: number) => {
      if (this.sessions.get(claims.key) === session) this.sessions.delete(claims.key);
      // Not ended by the client, idleness, its token or a drain: the next poll resumes it here.
      if (!ENDING.has(code)) this.resumable.set(claims.key, Date.now() + 2 * this.config.poll.timeoutMs);
      this.gateway.handleDisconnect(sink, code);
    });
    const hello = JSON.stringify({ type: 'hello', payload: cursor ? { last_msg_id: cursor } : {} });
    this.gateway.onFrame(sink, Buffer.from(hello), false);
    session.ready = sink.greeted.then((g) => {
      if (!g.ok) throw this.closedError(g.code);
      const { recovered, cursor: at } = (JSON.parse(g.welcome) as { payload: WelcomeFields }).payload;
      const position = decodeCursor(at);
      session.epoch = position?.epoch ?? '';
      session.handed = position?.seq ?? 0;
      session.sink.advanceFloor(session.handed);
      welcomes.set(session, g.welcome);
      if (!recovered && resuming) {
        sink.close(REPLACED, 'cursor not recoverable');
        throw new PollError('session_expired', 'deliveries after the cursor are gone; open a new session');
      }
    });
    session.ready.catch(() => undefined); // awaited by every request; this only marks it handled
    return session;
  }

  private welcomeOf(session: LocalSession): string {
    return welcomes.get(session) ?? '';
  }

  /** Session keys with a live copy on any node (the session map is shared). */
  private async liveKeys(userId: string): Promise<Set<string>> {
    let entries;
    try {
      entries = (await this.sessionMap.lookup([userId])).get(userId) ?? [];
    } catch (err) {
      this.logger.warn(`session lookup failed: ${(err as Error).message}`);
      throw new PollError('unavailable', 'session store unavailable, retry');
    }
    const keys = new Set<string>();
    for (const e of entries) if (e.connId.startsWith('poll:')) keys.add(e.connId.split(':')[1]);
    for (const [key, s] of this.sessions) if (s.claims.userId === userId) keys.add(key);
    return keys;
  }

  private spend(session: LocalSession): void {
    if (!session.budget.take(Date.now())) throw new PollError('rate_limited', 'too many requests, slow down');
  }

  /** The frames of a POST body (an array of frame objects, within the count and size limits), with their send refs. */
  private framesOf(body: unknown): { text: string; ref: string | undefined }[] {
    if (!Array.isArray(body)) {
      throw new PollError(
        'bad_frame',
        'the body must be a JSON array of frames (content-type: application/json)',
      );
    }
    const { maxRequestFrames } = this.config.poll;
    if (body.length > maxRequestFrames) {
      throw new PollError('too_large', `at most ${maxRequestFrames} frames per request`);
    }
    const { maxFrameBytes } = this.config.gateway;
    return body.map((frame: unknown) => {
      const f = (frame !== null && typeof frame === 'object' ? frame : {}) as Record<string, unknown>;
      if (f.type === 'hello') {
        throw new PollError('bad_frame', 'hello is sent by POST /v1/poll/open, not in a session');
      }
      const text = JSON.stringify(frame) ?? 'null';
      if (Buffer.byteLength(text) > maxFrameBytes) {
        throw new PollError('too_large', `a frame exceeds ${maxFrameBytes} bytes`);
      }
      const ref =
        f.type === 'send' && typeof f.msg_id === 'string' && f.msg_id.length > 0
          ? echoableRef(f.msg_id)
          : undefined;
      return { text, ref };
    });
  }

  /** Ends copies nobody polled for two poll timeouts. */
  private endIdle(): void {
    const now = Date.now();
    for (const [key, until] of this.resumable) if (until < now) this.resumable.delete(key);
    const cutoff = now - 2 * this.config.poll.timeoutMs;
    for (const s of [...this.sessions.values()]) {
      if (s.polling === 0 && s.lastPollAt < cutoff) s.sink.close(1000, 'poll timeout');
    }
  }

  private throwClosed(code: number): never {
    throw this.closedError(code);
  }

  private closedError(code: number): PollError {
    switch (code) {
      case CLOSE.unauthorized:
        return new PollError('unauthorized', 'unauthorized: token expired');
      case CLOSE.flooding:
        return new PollError('rate_limited', 'flooding: too many frames over budget');
      case CLOSE.tooLarge:
        return new PollError('too_large', 'frame too large');
      case CLOSE.draining:
        return new PollError('unavailable', 'server draining, retry');
      case 1000:
        return new PollError('session_expired', 'the long-polling session ended; open a new one');
      default:
        // 1011 (outbox unavailable), 1013 (too much queued), replaced: the next poll resumes from its cursor.
        return new PollError('unavailable', 'the session was interrupted; poll again from your cursor');
    }
  }
}

/** Close codes that end a session for good (the client must open a new one, or is refused). */
const ENDING = new Set<number>([1000, CLOSE.unauthorized, CLOSE.flooding, CLOSE.tooLarge, CLOSE.draining]);

interface WelcomeFields {
  recovered: boolean;
  cursor: string;
}

/** The welcome each copy got, for the open request (kept off LocalSession: only open reads it). */
const welcomes = new WeakMap<LocalSession, string>();

function refusal(status: number, reason: string): PollError {
  switch (status) {
    case 401:
      return new PollError('unauthorized', `unauthorized: ${reason}`);
    case 403:
      return new PollError('forbidden', reason);
    case 429:
      return new PollError('rate_limited', reason);
    default:
      return new PollError('unavailable', reason);
  }
}

function parseCursor(raw: unknown, required: boolean): Cursor | null {
  if (raw === undefined && !required) return null;
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 128) {
    throw new PollError(
      'bad_frame',
      'cursor: the last delivery cursor (welcome.payload.cursor or a message msg_id) is required',
    );
  }
  const cursor = decodeCursor(raw);
  if (!cursor) throw new PollError('bad_frame', 'cursor is not a delivery cursor');
  return cursor;
}
