import { BeforeApplicationShutdown, Logger, OnApplicationBootstrap } from '@nestjs/common';
import {
  OnGatewayConnection,
  OnGatewayDisconnect,
  WebSocketGateway,
  WebSocketServer,
} from '@nestjs/websockets';
import { randomUUID } from 'node:crypto';
import { IncomingMessage } from 'node:http';
import { RawData, WebSocket, type WebSocketServer as WsServer } from 'ws';
import { Config } from '../config/config.module';
import { decodeCursor, encodeCursor, planResume } from '../outbox/cursor';
import { OutboxStore } from '../outbox/outbox.store';
import { CLOSE, ClientFrame, ErrorCode } from '../protocol/frames';
import { SessionMap } from '../session/session-map';
import { MetricsService } from '../metrics/metrics.service';
import { NodeStatus } from '../health/node-status';
import { AdmissionService } from './admission.service';
import { Connection, ConnectionObserver } from './connection';
import { ConnectionRegistry } from './connection.registry';
import { EgressService } from './egress.service';
import { decodeFrame, frameRef } from './frame.codec';
import { IngressService } from './ingress.service';
import { FrameSink, verdictOf } from './relay-ws.adapter';

/**
 * The WebSocket endpoint (`GET /ws` on the HTTP port), a Nest gateway served by RelayWsAdapter: the
 * adapter runs admission before the upgrade (HTTP 401/403/429/503) and hands every raw frame to
 * `onFrame`; this class owns what happens to a connection from then on (handshake, frames, resume,
 * heartbeat, drain). No `@SubscribeMessage`: frames go straight from the socket to relay's codec.
 *
 * Containment: every socket event handler and timer callback runs inside a try/catch boundary
 * (`guard`, inlined on the per-frame path), so an unexpected exception while handling one connection
 * is logged, counted (`contained{where}`) and costs that connection a close 1011, never the process.
 */
@WebSocketGateway({ path: '/ws' })
export class GatewayServer
  implements
    OnGatewayConnection<WebSocket>,
    OnGatewayDisconnect<WebSocket>,
    OnApplicationBootstrap,
    BeforeApplicationShutdown,
    FrameSink
{
  private readonly logger = new Logger(GatewayServer.name);
  /** Set by Nest: every socket of this endpoint, with or without hello (the drain closes them all). */
  @WebSocketServer() private readonly server!: WsServer;
  /** The connection behind each socket; a WeakMap so a socket never outlives its entry here. */
  private readonly connections = new WeakMap<WebSocket, { conn: Connection; ip: string }>();
  private heartbeat: NodeJS.Timeout | undefined;
  /** Connection -> metrics, one object shared by every connection. */
  private readonly observer: ConnectionObserver = {
    frameRejected: (code: ErrorCode) => this.metrics.framesRejected.labels(code).inc(),
    closedByServer: (code: number) => this.metrics.connectionsClosed.labels(String(code)).inc(),
  };

  constructor(
    private readonly config: Config,
    private readonly admission: AdmissionService,
    private readonly status: NodeStatus,
    private readonly outbox: OutboxStore,
    private readonly sessions: SessionMap,
    private readonly registry: ConnectionRegistry,
    private readonly ingress: IngressService,
    private readonly egress: EgressService,
    private readonly metrics: MetricsService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.egress.start();
    const hb = this.config.gateway.heartbeatMs;
    this.heartbeat = setInterval(
      () => void this.sweep().catch((err: unknown) => this.contain('heartbeat', err)),
      hb,
    );
    this.heartbeat.unref();
  }

  /**
   * A socket the adapter upgraded after admission. A refusal that must reach a browser as a close
   * reason (a refused token on a request with `Origin`) is closed here at once.
   */
  handleConnection(ws: WebSocket, req: IncomingMessage): void {
    try {
      const verdict = verdictOf(req);
      if (!verdict) return ws.close(CLOSE.internal, 'not admitted');
      if (!verdict.ok) return ws.close(verdict.closeWith?.code ?? CLOSE.internal, verdict.closeWith?.reason);
      this.accept(ws, verdict.principal.userId, verdict.principal.expiresAt, verdict.ip);
    } catch (err) {
      this.contain('connection', err);
      ws.terminate();
    }
  }

  /** Every frame of every socket (RelayWsAdapter's one listener). */
  onFrame(ws: WebSocket, data: RawData, isBinary: boolean): void {
    const entry = this.connections.get(ws);
    if (!entry) return;
    try {
      this.onMessage(entry.conn, data, isBinary);
    } catch (err) {
      this.contain('frame', err, entry.conn);
    }
  }

  handleDisconnect(ws: WebSocket): void {
    const entry = this.connections.get(ws);
    if (!entry) return;
    this.connections.delete(ws);
    const { conn, ip } = entry;
    this.guard('close', null, () => {
      this.metrics.connections.dec();
      const wasRegistered = conn.state !== 'handshake';
      if (!wasRegistered) this.admission.handshakeEnded();
      this.admission.released(conn.userId, ip);
      conn.markClosed();
      this.registry.remove(conn);
      if (wasRegistered) {
        this.sessions
          .remove(conn.userId, conn.id)
          .catch((err: Error) => this.logger.warn(`session remove failed: ${err.message}`));
      }
    });
  }

  private accept(ws: WebSocket, userId: string, expiresAt: number | null, ip: string): void {
    // The gateway config section carries every per-connection limit (ConnectionLimits).
    const conn = new Connection(
      randomUUID(),
      userId,
      expiresAt,
      ws,
      this.outbox,
      this.config.gateway,
      this.observer,
    );
    this.metrics.connections.inc();
    this.admission.admitted(userId, ip);
    conn.handshakeTimer = setTimeout(
      () =>
        this.guard('handshake-timer', conn, () =>
          conn.close(CLOSE.handshakeTimeout, 'hello not received in time'),
        ),
      this.admission.handshakeTimeoutMs(),
    );
    ws.on('pong', () => {
      conn.missedPongs = 0;
      conn.lastPing = Date.now();
    });
    this.connections.set(ws, { conn, ip });
  }

  /**
   * Every inbound frame: frame budget first (a frame over budget is not parsed for anything but its
   * ref), then the token's expiry, then size, then the codec.
   */
  private onMessage(conn: Connection, data: RawData, isBinary: boolean): void {
    if (!conn.isOpen) return; // closing: whatever is still in flight is dropped unread
    const { gateway } = this.config;
    const now = Date.now();
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer).byteLength;
    const budget = conn.takeFrameToken(now);
    if (budget !== 'ok') {
      const ref = isBinary || size > gateway.maxFrameBytes ? undefined : frameRef(data.toString());
      conn.sendError('rate_limited', 'too many frames, slow down', ref);
      if (budget === 'flooding') conn.close(CLOSE.flooding, 'flooding');
      return;
    }
    if (conn.expired(now)) return conn.close(CLOSE.unauthorized, 'token expired');
    if (size > gateway.maxFrameBytes) {
      conn.sendError('too_large', `frame exceeds ${gateway.maxFrameBytes} bytes`);
      conn.close(CLOSE.tooLarge, 'frame too large');
      return;
    }
    if (isBinary) return conn.sendError('bad_frame', 'binary frames are not supported; send JSON text');
    this.handleText(conn, data.toString());
  }

  private handleText(conn: Connection, text: string): void {
    if (conn.state === 'greeting') {
      // Nothing may overtake `welcome`: hold frames until it is out (bounded by the rate limit's burst).
      if (conn.early.length < this.config.gateway.sendBurst) conn.early.push(text);
      else conn.sendError('rate_limited', 'too many frames before welcome');
      return;
    }
    const decoded = decodeFrame(text, this.config.gateway.maxJsonDepth);
    if (!decoded.ok) return conn.sendError(decoded.code, decoded.message, decoded.ref);
    const frame = decoded.frame;
    if (conn.state === 'handshake' && frame.type !== 'hello') {
      return conn.sendError(
        'handshake_required',
        'send hello first',
        'msg_id' in frame ? frame.msg_id : undefined,
      );
    }
    switch (frame.type) {
      case 'hello':
        if (conn.state !== 'handshake') return conn.sendError('bad_frame', 'hello was already received');
        return void this.hello(conn, frame).catch((err: unknown) => this.contain('hello', err, conn));
      case 'send':
        return this.ingress.handleSend(conn, frame);
      case 'confirm':
        return; // accepted; kept for receipts and metrics later
      case 'ping':
        return conn.sendRaw('{"type":"pong"}');
    }
  }

  /**
   * Register first, read second: a delivery committed before the router saw our session entry is in
   * the outbox by the time we read it; one committed after is pushed to us. Pushes that arrive while
   * we read wait in the connection (see Connection) and are de-duplicated by seq.
   */
  private async hello(conn: Connection, frame: Extract<ClientFrame, { type: 'hello' }>): Promise<void> {
    clearTimeout(conn.handshakeTimer);
    this.admission.handshakeEnded();
    conn.state = 'greeting';
    this.registry.add(conn);
    try {
      const now = Date.now();
      await this.sessions.add(conn.userId, {
        connId: conn.id,
        node: this.config.nodeId,
        connectedAt: now,
        lastPing: now,
      });
      if ((conn.state as Connection['state']) === 'closed') {
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
    } catch (err) {
      this.logger.warn(`hello for ${conn.userId} failed: ${(err as Error).message}`);
      conn.sendError('unavailable', 'session store unavailable, reconnect later');
      conn.close(CLOSE.internal, 'unavailable');
      return;
    }
    // Outside the try: a bug in handling a held frame is contained, not reported as a store outage.
    for (const text of conn.early.splice(0)) this.handleText(conn, text);
  }

  /** Heartbeat: ping every socket, drop those that missed two pongs, refresh live session TTLs in one batch. */
  private async sweep(): Promise<void> {
    const alive: Connection[] = [];
    for (const conn of this.registry.all) {
      // Token expiry is each connection's own timer (Connection), not this sweep's job.
      try {
        if (conn.missedPongs >= 2) {
          conn.terminate();
          continue;
        }
        conn.missedPongs++;
        conn.ping();
        alive.push(conn);
      } catch (err) {
        this.contain('heartbeat', err, conn);
      }
    }
    // Built synchronously from connections still open, so a socket closing meanwhile is not written back.
    const entries = alive
      .filter((c) => c.state !== 'closed')
      .map((c) => ({
        userId: c.userId,
        entry: { connId: c.id, node: this.config.nodeId, connectedAt: c.connectedAt, lastPing: c.lastPing },
      }));
    const results = await Promise.allSettled([
      this.sessions.registerNode(this.config.nodeId),
      entries.length > 0 ? this.sessions.touch(entries) : Promise.resolve(),
    ]);
    for (const r of results) {
      if (r.status === 'rejected')
        this.logger.warn(`session heartbeat failed: ${(r.reason as Error).message}`);
    }
  }

  /**
   * SIGTERM: refuse new upgrades (admission answers 503, and /health/ready turns 503), ask every
   * client to reconnect elsewhere (1012), wait for the sockets. Runs before Nest closes the WebSocket
   * server, so a reconnect during the drain gets 503, not a silent socket close.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.status.startDraining();
    clearInterval(this.heartbeat);
    // Every socket, including those still before hello (the registry only has helloed ones).
    const closing = [...(this.server?.clients ?? [])].map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState !== WebSocket.OPEN) return resolve();
          ws.once('close', () => resolve());
          const conn = this.connections.get(ws)?.conn;
          if (conn) conn.close(CLOSE.draining, 'server draining, reconnect');
          else ws.close(CLOSE.draining, 'server draining, reconnect');
        }),
    );
    const deadline = new Promise<void>((r) =>
      setTimeout(r, Math.min(5_000, this.config.shutdownTimeoutMs / 2)).unref(),
    );
    await Promise.race([Promise.all(closing), deadline]);
    for (const ws of this.server?.clients ?? []) ws.terminate(); // Nest closes the server itself
    await this.egress.stop().catch(() => undefined);
    this.logger.log(`drained; closed ${closing.length} connections`);
  }

  /** Runs one socket/timer handler; an unexpected exception is contained and closes `conn` with 1011. */
  private guard(where: string, conn: Connection | null, handler: () => void): void {
    try {
      handler();
    } catch (err) {
      this.contain(where, err, conn);
    }
  }

  /** An unexpected exception at a containment boundary: log it once, count it, drop the connection. */
  private contain(where: string, err: unknown, conn: Connection | null = null): void {
    this.metrics.contained.labels(where).inc();
    const what = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.logger.error(`unexpected error in ${where}${conn ? ` (user ${conn.userId})` : ''}: ${what}`);
    if (!conn) return;
    try {
      conn.close(CLOSE.internal, 'internal error');
    } catch {
      conn.terminate();
    }
  }
}
