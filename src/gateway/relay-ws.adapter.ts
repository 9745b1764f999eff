import { INestApplicationContext, Logger } from '@nestjs/common';
import { WsAdapter } from '@nestjs/platform-ws';
import { IncomingMessage, Server } from 'node:http';
import { Duplex } from 'node:stream';
import { RawData, WebSocket } from 'ws';
import { AdmissionResult } from './admission.service';

/** What the adapter needs from admission: one decision per upgrade request. */
export interface UpgradeAdmission {
  admit(req: IncomingMessage): Promise<AdmissionResult>;
}

/** What the adapter needs from the gateway: raw frames, straight from the socket. */
export interface FrameSink {
  onFrame(ws: WebSocket, data: RawData, isBinary: boolean): void;
}

/** Handed from `verifyClient` to `handleConnection` with the request object (see `verdictOf`). */
const verdicts = new WeakMap<IncomingMessage, AdmissionResult>();

/** The admission decision taken for this upgrade request, for the gateway's `handleConnection`. */
export function verdictOf(req: IncomingMessage): AdmissionResult | undefined {
  return verdicts.get(req);
}

/**
 * `@nestjs/platform-ws` in its thin form. Nest owns the upgrade routing on the app's HTTP port and the
 * server's close; relay keeps the hot path:
 * - `verifyClient` runs admission (drain, Origin, caps, auth) before the upgrade, so refusals are HTTP
 *   401/403/429/503 answers, not sockets opened and closed;
 * - one raw `message` listener per socket hands frames to the gateway's codec. Nest's per-event dispatch
 *   (rxjs, pipes, `@SubscribeMessage`) costs ~11 µs and ~7 KB per connection more, and silently drops bad
 *   JSON and unknown types, which the protocol must answer;
 * - an upgrade on any path no gateway serves gets 404 instead of a destroyed socket.
 */
/** An upgrade socket's error ends it; one function for every socket (`this` is the socket). */
function destroyOnError(this: Duplex): void {
  this.destroy();
}

export class RelayWsAdapter extends WsAdapter {
  private readonly log = new Logger('RelayWsAdapter');
  /**
   * The per-socket listeners are shared functions: EventEmitter calls a listener with `this` set to
   * the socket, so no closure (and its context) is allocated per connection.
   */
  private readonly onSocketMessage: (this: WebSocket, data: RawData, isBinary: boolean) => void;
  private readonly onSocketError: (this: WebSocket, err: Error) => void;

  constructor(
    app: INestApplicationContext,
    private readonly admission: UpgradeAdmission,
    private readonly frames: FrameSink,
    private readonly maxPayload: number,
  ) {
    super(app);
    const sink = this.frames;
    const log = this.log;
    this.onSocketMessage = function (data, isBinary) {
      sink.onFrame(this, data, isBinary);
    };
    this.onSocketError = function (err) {
      log.debug(`socket error: ${err.message}`);
    };
  }

  override create(port: number, options: Record<string, unknown> = {}): unknown {
    return super.create(port, {
      ...options,
      maxPayload: this.maxPayload,
      verifyClient: (
        info: { req: IncomingMessage },
        done: (ok: boolean, status?: number, reason?: string) => void,
      ) => {
        this.admission.admit(info.req).then(
          (verdict) => {
            verdicts.set(info.req, verdict);
            // A refusal that must reach a browser as a close reason completes the upgrade first.
            if (verdict.ok || verdict.closeWith) done(true);
            else done(false, verdict.status);
          },
          (err: Error) => {
            this.log.error(`admission failed: ${err.message}`);
            done(false, 503);
          },
        );
      },
    });
  }

  /** One listener per socket; nothing of Nest's message pipeline runs per frame. */
  override bindMessageHandlers(client: WebSocket): void {
    client.on('message', this.onSocketMessage);
  }

  /** Socket errors are the client's business (resets, bad frames): debug, not error, level. */
  override bindErrorHandler(server: { on(event: string, cb: (...args: never[]) => void): void }): unknown {
    server.on('connection', (ws: WebSocket) => ws.on('error', this.onSocketError));
    server.on('error', (err: Error) => this.log.error(`server error: ${err.message}`));
    return server;
  }

  /** Wraps Nest's upgrade listener: paths no gateway serves get 404 rather than a destroyed socket. */
  protected override ensureHttpServerExists(port: number, httpServer?: Server): Server | undefined {
    const before = new Set(httpServer?.listeners('upgrade') ?? []);
    const result = super.ensureHttpServerExists(port, httpServer);
    const added = httpServer?.listeners('upgrade').find((l) => !before.has(l)) as
      ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
    if (!httpServer || !added) return result;
    httpServer.off('upgrade', added);
    const served = () => (this.wsServersRegistry.get(port) ?? []).map((s: { path?: string }) => s.path);
    httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', destroyOnError);
      const path = (req.url ?? '').split('?')[0];
      if (!served().includes(path)) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      added(req, socket, head);
    });
    return result;
  }
}
