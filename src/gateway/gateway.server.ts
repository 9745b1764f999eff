import { BeforeApplicationShutdown, Logger, OnApplicationBootstrap } from '@nestjs/common';
import {
  OnGatewayConnection,
  OnGatewayDisconnect,
  WebSocketGateway,
  WebSocketServer,
} from '@nestjs/websockets';
import { randomBytes } from 'node:crypto';
import { IncomingMessage } from 'node:http';
import { RawData, WebSocket, type WebSocketServer as WsServer } from 'ws';
import { Config } from '../config/config.module';
import { OutboxStore } from '../outbox/outbox.store';
import { CLOSE, ErrorCode } from '../protocol/frames';
import { MetricsService } from '../metrics/metrics.service';
import { NodeStatus } from '../health/node-status';
import { AdmissionService } from './admission.service';
import { Connection, ConnectionObserver } from './connection';
import type { ConnectionSocket } from './connection-socket';
import { Containment } from './containment';
import { EgressService } from './egress.service';
import { decodeFrame, frameRef } from './frame.codec';
import { HeartbeatService } from './heartbeat.service';
import { IngressService } from './ingress.service';
import { PresenceHub } from './presence-hub.service';
import { TypingService } from './typing.service';
import { FrameSink, verdictOf } from './relay-ws.adapter';
import { HeldFrameHandler, ResumeService } from './resume.service';
import { ReceiptIngressService } from './receipt-ingress.service';

/**
 * The WebSocket endpoint (`GET /ws` on the HTTP port), a Nest gateway served by RelayWsAdapter: the
 * adapter runs admission before the upgrade (HTTP 401/403/429/503) and hands every raw frame to
 * `onFrame`. This class wires each socket to its Connection (handshake timer, pongs, close), dispatches
 * frames, and drains on shutdown; `hello` goes to ResumeService, the ping sweep is HeartbeatService.
 * No `@SubscribeMessage`: frames go straight from the socket to relay's codec.
 *
 * Containment: every socket event handler and timer callback runs inside a Containment boundary
 * (inlined on the per-frame path), so an unexpected exception while handling one connection is
 * logged, counted (`contained{where}`) and costs that connection a close 1011, never the process.
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
  private readonly connections = new WeakMap<ConnectionSocket, Connection>();
  private readonly boundary: Containment;
  /** Frames held during the greeting re-enter the dispatch here (one function for every connection). */
  private readonly handleHeld: HeldFrameHandler = (conn, text) => this.handleText(conn, text);
  /** Every socket's `pong` listener (`this` is the socket): shared, no closure per connection. */
  private readonly onPong = ((connections) =>
    function (this: WebSocket): void {
      connections.get(this)?.onPong();
    })(this.connections);
  /** A connection's hello did not come in time (one function for every connection). */
  private readonly onHelloTimeout = (conn: Connection): void =>
    this.boundary.guard('handshake-timer', conn, () =>
      conn.close(CLOSE.handshakeTimeout, 'hello not received in time'),
    );
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
    private readonly ingress: IngressService,
    private readonly egress: EgressService,
    private readonly resume: ResumeService,
    private readonly heartbeat: HeartbeatService,
    private readonly metrics: MetricsService,
    private readonly typing: TypingService,
    private readonly presence: PresenceHub,
    private readonly receipts: ReceiptIngressService,
  ) {
    this.boundary = new Containment(metrics, this.logger);
  }

  /** Subscribed to this node's channel before the first socket, heartbeats from then on. */
  async onApplicationBootstrap(): Promise<void> {
    await this.egress.start();
    this.heartbeat.start();
  }

  /**
   * A socket the adapter upgraded after admission. A refusal that must reach a browser as a close
   * reason (a refused token on a request with `Origin`) is closed here at once.
   */
  handleConnection(ws: WebSocket, req: IncomingMessage): void {
    try {
      const verdict = verdictOf(req);
      if (!verdict) return this.refuse(ws, CLOSE.internal, 'not admitted');
      if (!verdict.ok) {
        return this.refuse(ws, verdict.closeWith?.code ?? CLOSE.internal, verdict.closeWith?.reason);
      }
      this.accept(ws, verdict.principal.userId, verdict.principal.expiresAt, verdict.ip);
    } catch (err) {
      this.boundary.contain('connection', err);
      ws.terminate();
    }
  }

  /** Every frame of every socket (RelayWsAdapter's one listener). */
  onFrame(ws: ConnectionSocket, data: RawData, isBinary: boolean): void {
    const conn = this.connections.get(ws);
    if (!conn) return;
    try {
      this.onMessage(conn, data, isBinary);
    } catch (err) {
      this.boundary.contain('frame', err, conn);
    }
  }

  /** `code`: the socket's close code (Nest passes on the first argument of ws's `close` event). */
  handleDisconnect(ws: ConnectionSocket, code?: unknown): void {
    const conn = this.connections.get(ws);
    if (!conn) return;
    this.connections.delete(ws);
    const { ip } = conn;
    this.logger.debug('connection closed', { conn: conn.id, user: conn.userId, code });
    this.boundary.guard('close', null, () => {
      this.countEnd(typeof code === 'number' ? code : 1006, conn.closedByServer);
      this.metrics.connections.dec();
      const helloed = conn.state !== 'handshake';
      if (!helloed) this.admission.handshakeEnded();
      this.admission.released(conn.userId, ip);
      conn.markClosed();
      if (helloed) this.resume.release(conn);
    });
  }

  /** Closes a socket that never got a Connection (refused after the upgrade, or drained before one). */
  private refuse(ws: WebSocket, code: number, reason?: string): void {
    this.observer.closedByServer(code);
    ws.once('close', (echoed: number) => this.countEnd(echoed, true));
    ws.close(code, reason);
  }

  /** Every close once the socket is gone: its code and who started it. */
  private countEnd(code: number, byServer: boolean): void {
    this.metrics.connectionsEnded.inc({ code: String(code), by: byServer ? 'server' : 'client' });
  }

  /**
   * A connection over another transport (long polling, src/gateway/poll): wired like an upgraded
   * socket; its owner feeds frames to `onFrame` and reports its end to `handleDisconnect`.
   */
  attach(socket: ConnectionSocket, id: string, userId: string, expiresAt: number | null, ip: string): void {
    this.accept(socket, userId, expiresAt, ip, id);
  }

  private accept(
    ws: ConnectionSocket,
    userId: string,
    expiresAt: number | null,
    ip: string,
    // 96 random bits as one flat string: randomUUID()'s is a rope of 14 pieces (~450 B kept per connection).
    id: string = randomBytes(12).toString('base64url'),
  ): void {
    // The gateway config section carries every per-connection limit (ConnectionLimits).
    const conn = new Connection(
      id,
      userId,
      expiresAt,
      ws,
      this.outbox,
      this.config.gateway,
      this.observer,
      ip,
    );
    this.metrics.connections.inc();
    this.metrics.connects.inc();
    this.admission.admitted(userId, ip);
    conn.expectHello(this.admission.handshakeTimeoutMs(), this.onHelloTimeout);
    ws.on('pong', this.onPong);
    this.connections.set(ws, conn);
    this.logger.debug('connection open', { conn: conn.id, user: userId, ip });
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
      if (!conn.holdEarly(text)) conn.sendError('rate_limited', 'too many frames before welcome');
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
        this.admission.handshakeEnded();
        return void this.resume
          .hello(conn, frame, this.handleHeld)
          .catch((err: unknown) => this.boundary.contain('hello', err, conn));
      case 'send':
        return this.ingress.handleSend(conn, frame);
      case 'confirm':
        return this.receipts.handleConfirm(conn, frame); // v1.1: delivered receipts
      case 'read':
        return this.receipts.handleRead(conn, frame); // v1.1
      case 'ping':
        return conn.sendRaw('{"type":"pong"}');
      // v1.1 ephemeral live features
      case 'typing':
        return this.typing.handle(conn, frame);
      case 'presence.subscribe':
      case 'presence.unsubscribe':
        return this.presence.handle(conn, frame);
    }
  }

  /**
   * SIGTERM: refuse new upgrades (admission answers 503, and /health/ready turns 503), ask every
   * client to reconnect elsewhere (1012), wait for the sockets. Runs before Nest closes the WebSocket
   * server, so a reconnect during the drain gets 503, not a silent socket close.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.status.startDraining();
    this.heartbeat.stop();
    // Every socket, including those still before hello (the registry only has helloed ones).
    const closing = [...(this.server?.clients ?? [])].map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState !== WebSocket.OPEN) return resolve();
          ws.once('close', () => resolve());
          const conn = this.connections.get(ws);
          if (conn) conn.close(CLOSE.draining, 'server draining, reconnect');
          else this.refuse(ws, CLOSE.draining, 'server draining, reconnect');
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
}
