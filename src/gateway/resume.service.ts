import { Injectable, Logger } from '@nestjs/common';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { decodeCursor, encodeCursor, planResume } from '../outbox/cursor';
import { OutboxStore } from '../outbox/outbox.store';
import { CLOSE, ClientFrame } from '../protocol/frames';
import { SessionMap } from '../session/session-map';
import { Connection, ConnectionState } from './connection';
import { ConnectionRegistry } from './connection.registry';

type HelloFrame = Extract<ClientFrame, { type: 'hello' }>;

/** Where the frames held during the greeting go once `welcome` is out: the gateway's frame dispatch. */
export type HeldFrameHandler = (conn: Connection, text: string) => void;

/**
 * `hello` -> `welcome` -> delivery (docs/architecture.md "Resume"): registers the connection, decides
 * from the outbox what it resumes from, answers `welcome`, starts delivery, then hands on the frames
 * the client sent meanwhile. On close it undoes the registration.
 *
 * Invariant: register first, read second. A delivery committed before the router saw our session
 * entry is in the outbox by the time we read it; one committed after is pushed to us. Pushes that
 * arrive while we read wait in the connection (see Connection) and are de-duplicated by seq.
 */
@Injectable()
export class ResumeService {
  private readonly logger = new Logger(ResumeService.name);

  constructor(
    private readonly config: Config,
    private readonly outbox: OutboxStore,
    private readonly sessions: SessionMap,
    private readonly registry: ConnectionRegistry,
    private readonly metrics: MetricsService,
  ) {}

  /**
   * Answers `hello`. A store that fails answers `unavailable` and closes 1011 (the client retries);
   * anything else that throws (handling a held frame included) rejects, for the caller's boundary.
   */
  async hello(conn: Connection, frame: HelloFrame, handleHeld: HeldFrameHandler): Promise<void> {
    conn.beginGreeting();
    this.registry.add(conn);
    try {
      const now = Date.now();
      await this.sessions.add(conn.userId, {
        connId: conn.id,
        node: this.config.nodeId,
        connectedAt: now,
        lastPing: now,
      });
      if ((conn.state as ConnectionState) === 'closed') {
        await this.sessions.remove(conn.userId, conn.id); // closed while we registered it
        return;
      }
      const epoch = this.outbox.epoch();
      const raw = frame.payload?.last_msg_id;
      const cursor = raw === undefined ? null : (decodeCursor(raw) ?? { epoch: '', seq: 0 });
      const from = cursor && cursor.epoch === epoch ? cursor.seq : 0;
      const plan = planResume(cursor, epoch, await this.outbox.retention(conn.userId, from));
      conn.sendRaw(
        JSON.stringify({
          type: 'welcome',
          payload: {
            user_id: conn.userId,
            node_id: this.config.nodeId,
            heartbeat_ms: this.config.gateway.heartbeatMs,
            recovered: plan.recovered,
            cursor: encodeCursor(epoch, plan.afterSeq),
          },
        }),
      );
      conn.start(epoch, plan.afterSeq);
      this.metrics.resumes.inc({ outcome: !cursor ? 'fresh' : plan.recovered ? 'recovered' : 'lost' });
      this.logger.debug('welcome', { conn: conn.id, user: conn.userId, recovered: plan.recovered });
    } catch (err) {
      this.logger.warn(`hello failed: ${(err as Error).message}`, { conn: conn.id, user: conn.userId });
      conn.sendError('unavailable', 'session store unavailable, reconnect later');
      conn.close(CLOSE.internal, 'unavailable');
      return;
    }
    // Outside the try: a bug in handling a held frame is contained, not reported as a store outage.
    for (const text of conn.takeEarly()) handleHeld(conn, text);
  }

  /** A connection that had said hello closed: drop it here, then from the session map. */
  release(conn: Connection): void {
    this.registry.remove(conn);
    this.sessions
      .remove(conn.userId, conn.id)
      .catch((err: Error) => this.logger.warn(`session remove failed: ${err.message}`));
  }
}
