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

/** What the adapter needs from the gateway: raw frames and the close, straight from the socket. */
export interface FrameSink {
  onFrame(ws: WebSocket, data: RawData, isBinary: boolean): void;
  /** The socket closed; `code` is ws's close code. */
  handleDisconnect(ws: WebSocket, code?: unknown): void;
}

/** Handed from `verifyClient` to `handleConnection` with the request object (see `verdictOf`). */
const verdicts = new WeakMap<IncomingMessage, AdmissionResult>();

/** The admission decision taken for this upgrade request, for the gateway's `handleConnection`. */
export function verdictOf(req: IncomingMessage): AdmissionResult | undefined {
  return verdicts.get(req);
}

/** An upgrade socket's error ends it; one function for every socket (`this` is the socket). */
function destroyOnError(this: Duplex): void {
  this.destroy();
}

/**
 * ws's WebSocket for the sockets this adapter's servers accept (ws's `WebSocket` server option). The
 * events relay handles on every socket are dispatched here, once, instead of through listeners
 * registered on each socket: frames (`message`) go straight to the gateway's codec, `close` to its
 * `handleDisconnect`, `error` to a debug line. Listeners anyone else adds (ws's own `close` for
 * `clients`, the gateway's `pong`, a drain's `once('close')`) still run, through EventEmitter.
 * Each socket's listener table then holds two events instead of four: the larger table and Nest's
 * per-socket close listener cost ~360 B per idle connection more (docs/performance.md).
 */
function relaySocketClass(sink: FrameSink, log: Logger): typeof WebSocket {
  return class RelaySocket extends WebSocket {
    // ws emits with these argument lists: message (data, isBinary), close (code, reason), error (err).
    override emit(event: string | symbol, ...args: unknown[]): boolean {
      switch (event) {
        case 'message':
          sink.onFrame(this, args[0] as RawData, args[1] as boolean);
          return this.listenerCount(event) > 0 ? super.emit(event, ...args) : true;
        case 'close':
          super.emit(event, ...args); // ws's own `clients` bookkeeping first, as before
          sink.handleDisconnect(this, args[0]);
          return true;
        case 'error':
          log.debug(`socket error: ${(args[0] as Error).message}`);
          // Without a listener EventEmitter throws an 'error': handled here, so only pass it on.
          return this.listenerCount(event) > 0 ? super.emit(event, ...args) : true;
        default:
          return super.emit(event, ...args);
      }
    }
  };
}

/**
 * `@nestjs/platform-ws` in its thin form. Nest owns the upgrade routing on the app's HTTP port and the
 * server's close; relay keeps the hot path:
 * - `verifyClient` runs admission (drain, Origin, caps, auth) before the upgrade, so refusals are HTTP
 *   401/403/429/503 answers, not sockets opened and closed;
 * - every socket is a RelaySocket (above): frames go from the socket to the gateway's codec with no
 *   listener in between. Nest's per-event dispatch (rxjs, pipes, `@SubscribeMessage`) costs ~11 µs and
 *   ~7 KB per connection more, and silently drops bad JSON and unknown types, which the protocol must
 *   answer; the close reaches the gateway's `handleDisconnect` without Nest's per-socket `once` wrapper
 *   around a closure (~300 B kept by every open socket);
 * - an upgrade on any path no gateway serves gets 404 instead of a destroyed socket.
 */
export class RelayWsAdapter extends WsAdapter {
  private readonly log = new Logger('RelayWsAdapter');
  private readonly socketClass: typeof WebSocket;

  constructor(
    app: INestApplicationContext,
    private readonly admission: UpgradeAdmission,
    private readonly frames: FrameSink,
    private readonly maxPayload: number,
  ) {
    super(app);
    this.socketClass = relaySocketClass(this.frames, this.log);
  }

  override create(port: number, options: Record<string, unknown> = {}): unknown {
    return super.create(port, {
      ...options,
      maxPayload: this.maxPayload,
      WebSocket: this.socketClass,
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

  /** Frames are dispatched by RelaySocket itself: nothing of Nest's message pipeline runs per frame. */
  override bindMessageHandlers(): void {}

  /** The close is dispatched by RelaySocket itself; Nest's callback (the same `handleDisconnect`) is not bound. */
  override bindClientDisconnect(): void {}

  /** Socket errors are the client's business (resets, bad frames): RelaySocket logs them at debug level. */
  override bindErrorHandler(server: { on(event: string, cb: (...args: never[]) => void): void }): unknown {
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
