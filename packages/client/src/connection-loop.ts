import type { ConnectionState, DisconnectEvent, Session } from './api.js';
import { Backoff } from './backoff.js';
import { RelayError, describe } from './errors.js';
import { CloseCode } from './protocol.js';
import type { ClientFrame, WelcomePayload } from './protocol.js';
import { OPEN, abandon } from './socket.js';
import type { WebSocketConstructor, WebSocketLike } from './socket.js';
import { listenForWake } from './wake-signals.js';
import { LongPollSocket } from './long-poll-socket.js';
import type { FetchLike } from './long-poll-socket.js';
import { TransportChoice, probeWebSocket, wsBlocked } from './transport.js';
import type { Transport } from './transport.js';

/**
 * The connection loop: one WebSocket at a time, opened with the right credentials, watched by the
 * heartbeat, and replaced with back-off when it ends, until stop().
 *
 * Invariants:
 * - `ws` is the only socket listened to. Events from a socket that was replaced or given up on are
 *   ignored (`ws !== this.ws`), and abandon() detaches its handlers.
 * - `welcomed` means `ws` is set and its welcome arrived; every disconnect and stop() clears it.
 * - At most one attempt is scheduled (`retryTimer`). Once stopped, none is and no timer is armed.
 */

type Timer = ReturnType<typeof setTimeout>;

const DEFAULT_HEARTBEAT_MS = 25_000;
/** Close code for connections the client abandons itself (heartbeat or connect timeout); 4000-4999 is app-defined. */
const CLIENT_GAVE_UP = 4000;
/**
 * Ends of a welcomed connection that mean the server went away unexpectedly (crash, internal error,
 * restart, overload, or a dead host caught by our heartbeat), not a refusal.
 */
const ABNORMAL_CLOSES: ReadonlySet<number> = new Set([1006, 1011, 1012, 1013, CLIENT_GAVE_UP]);

/** The settings the loop reads (the connect options, defaults applied). */
export interface LoopOptions {
  url: string;
  token?: string;
  getToken?: () => string | Promise<string>;
  userId?: string;
  WebSocket: WebSocketConstructor;
  backoffBaseMs: number;
  backoffCapMs: number;
  healthyAfterMs: number;
  connectTimeoutMs: number;
  random: () => number;
  /** Transport fallback (transport.ts): allowed transports, WebSocket failures before long polling, probe pace. */
  transports: readonly Transport[];
  fallbackAfter: number;
  wsRetryMs: number;
  fetch: FetchLike | undefined;
}

/** What the loop needs from the client around it. */
export interface LoopHost {
  /** Loads the stored cursor; awaited once, before the first attempt. */
  loadCursor(): Promise<void>;
  /** The hello for a socket that just opened. */
  hello(): ClientFrame;
  /** A frame arrived on the current socket. */
  frame(data: unknown): void;
  /** The connection ended and another attempt follows: nothing is on the wire any more. */
  lost(code: number): void;
  /** The client cannot go on (the credentials were refused and there is no getToken): close it. */
  giveUp(err: RelayError): void;
  setState(state: ConnectionState): void;
  disconnected(event: DisconnectEvent): void;
  error(err: RelayError): void;
  /** A connection on another transport than the previous one reached welcome. */
  transport(name: Transport): void;
  /** The cursor the app has (for the background WebSocket probe's hello). */
  cursor(): string | undefined;
}

export class ConnectionLoop {
  private readonly backoff: Backoff;
  private _stopped = false;
  private loaded = false;
  private attempts = 0;

  // The current socket and what we know about it.
  private ws: WebSocketLike | undefined;
  private socketOpened = false;
  private socketError = '';
  private _welcomed = false;
  private _session: Session | undefined;
  private tokenInUse: string | undefined;
  private lastFrameAt = 0;

  /** The token the server refused last; we wait for getToken to return something else. */
  private rejectedToken: string | undefined;
  /** An immediate reconnect after 1012 was used and no welcome came since (prevents a hot loop). */
  private drainRetried = false;
  /** The last welcomed connection stayed up for healthyAfterMs. */
  private provedHealthy = false;
  /**
   * The current connection came after a healthy one: if it dies abnormally (the server crashed
   * again, e.g. right after its restart), the back-off starts over instead of continuing the ceiling
   * the outage built up. Only once per healthy connection, so a server that welcomes and dies in a
   * loop still gets an ever longer back-off.
   */
  private resetOnCrash = false;
  private removeWakeListeners: (() => void) | undefined;

  // Transport fallback: the choice, the transport of the current socket, the one last announced.
  private readonly transports: TransportChoice;
  private socketTransport: Transport = 'websocket';
  private announced: Transport | undefined;
  private probeTimer: Timer | undefined;
  private probe: { cancel(): void } | undefined;

  private retryTimer: Timer | undefined;
  private connectTimer: Timer | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private idleTimer: Timer | undefined;
  private healthyTimer: Timer | undefined;

  constructor(
    private readonly options: LoopOptions,
    private readonly host: LoopHost,
  ) {
    this.backoff = this.newBackoff();
    this.transports = new TransportChoice(options.transports, options.fallbackAfter);
  }

  /** The transport of the current (or next) connection. */
  get transport(): Transport {
    return this.transports.current;
  }

  get stopped(): boolean {
    return this._stopped;
  }

  /** The server's welcome arrived on the current socket (sends and confirms may flow). */
  get welcomed(): boolean {
    return this._welcomed;
  }

  /** The current connection's welcome, while it is up. */
  get session(): Session | undefined {
    return this._welcomed ? this._session : undefined;
  }

  /** Starts the first attempt. Asynchronous from its first await on. */
  start(): void {
    this.removeWakeListeners = listenForWake(() => this.reconnectNow());
    void this.attempt();
  }

  /**
   * Skips the back-off: when a retry is pending, cancels it and attempts at once. A no-op while
   * connected or while an attempt is already under way (and after stop()).
   */
  reconnectNow(): void {
    if (this._stopped || this.retryTimer === undefined) return;
    clearTimeout(this.retryTimer);
    void this.attempt();
  }

  /** Stops for good: lets the socket go without waiting for the close handshake, disarms every timer. */
  stop(): void {
    if (this._stopped) return;
    const ws = this.ws;
    this._stopped = true;
    this.ws = undefined;
    this._welcomed = false;
    if (ws) abandon(ws, 1000, 'client closed');
    this.clearConnectionTimers();
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.stopProbing();
    this.removeWakeListeners?.();
  }

  /** Writes a frame to the current socket; false when there is none or it is going away. */
  transmit(frame: ClientFrame | string): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
      return true;
    } catch {
      return false; // the socket is going away; its close event drives what happens next
    }
  }

  /** The server welcomed the current socket: heartbeat on, and the back-off resets once it proves healthy. */
  welcome(p: WelcomePayload): void {
    this.clearConnectionTimers(); // the connect timeout, and the heartbeat of a (buggy) earlier welcome
    this._welcomed = true;
    this.drainRetried = false;
    this.resetOnCrash = this.provedHealthy;
    this.provedHealthy = false;
    const heartbeatMs = p.heartbeat_ms || DEFAULT_HEARTBEAT_MS;
    this._session = { userId: p.user_id, nodeId: p.node_id, heartbeatMs, recovered: p.recovered };
    this.startHeartbeat(heartbeatMs);
    this.transports.ended(this.socketTransport, true);
    if (this.announced !== this.socketTransport) {
      this.announced = this.socketTransport;
      this.host.transport(this.socketTransport);
    }
    if (this.transports.shouldProbe) this.scheduleProbe();
    this.healthyTimer = setTimeout(() => {
      this.backoff.reset();
      this.provedHealthy = true;
    }, this.options.healthyAfterMs);
  }

  private async attempt(): Promise<void> {
    this.retryTimer = undefined;
    if (!this.loaded) {
      await this.host.loadCursor();
      this.loaded = true;
      if (this._stopped) return;
    }

    let token = this.options.token;
    const getToken = this.options.getToken;
    if (getToken && (this.attempts > 0 || token === undefined)) {
      try {
        token = await getToken();
      } catch (err) {
        if (this._stopped) return;
        this.scheduleRetry(this.backoff.next());
        this.host.error(
          new RelayError('token_error', `getToken failed: ${describe(err)}`, undefined, { cause: err }),
        );
        return;
      }
      if (this._stopped) return;
      if (token === this.rejectedToken) {
        // Same token the server just refused: connecting again would only be refused again.
        this.scheduleRetry(this.backoff.next());
        return;
      }
    }
    this.attempts++;
    this.openSocket(token);
  }

  private openSocket(token: string | undefined): void {
    const url = new URL(this.options.url);
    if (token !== undefined) url.searchParams.set('token', token);
    else if (this.options.userId !== undefined) url.searchParams.set('user_id', this.options.userId);

    let ws: WebSocketLike;
    const transport = this.transports.current;
    try {
      ws =
        transport === 'longpoll'
          ? new LongPollSocket(url.toString(), this.options.fetch!)
          : new this.options.WebSocket(url.toString());
    } catch (err) {
      this.scheduleRetry(this.backoff.next());
      this.host.error(new RelayError('connection_error', `could not create the WebSocket: ${describe(err)}`));
      return;
    }
    this.ws = ws;
    this.socketTransport = transport;
    this.tokenInUse = token;
    this.socketOpened = false;
    this.socketError = '';
    this._welcomed = false;

    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.socketOpened = true;
      this.transmit(this.host.hello());
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now(); // any frame proves the connection alive, even one we cannot parse
      this.host.frame(event.data);
    };
    ws.onerror = (event) => {
      const message = (event as { message?: unknown } | null)?.message;
      if (typeof message === 'string') this.socketError = message;
    };
    ws.onclose = (event) => {
      if (ws === this.ws) this.onDisconnected(event.code, event.reason ?? '');
    };
    this.connectTimer = setTimeout(
      () => this.abandonSocket('connect timeout'),
      this.options.connectTimeoutMs,
    );
  }

  private startHeartbeat(heartbeatMs: number): void {
    this.pingTimer = setInterval(() => this.transmit({ type: 'ping' }), heartbeatMs);
    // One timer that re-arms itself for the remaining time, instead of resetting a timer per frame.
    const limit = 2 * heartbeatMs;
    const check = () => {
      const idle = Date.now() - this.lastFrameAt;
      if (idle >= limit) this.abandonSocket('heartbeat timeout');
      else this.idleTimer = setTimeout(check, limit - idle);
    };
    this.idleTimer = setTimeout(check, limit);
  }

  /** We decided the connection is dead: don't wait for a close handshake that may never complete. */
  private abandonSocket(reason: string): void {
    if (this.ws) this.onDisconnected(CLIENT_GAVE_UP, reason);
  }

  private onDisconnected(code: number, reason: string): void {
    // Closed already (close event) or given up on by us: either way, stop listening and let it go.
    if (this.ws) abandon(this.ws, CLIENT_GAVE_UP, reason);
    const wasWelcomed = this._welcomed;
    this.ws = undefined;
    this._welcomed = false;
    this.clearConnectionTimers();
    if (this._stopped) return;

    // A browser reports an HTTP 401 on the upgrade only as a close (1006) before open; `ws` also
    // says "Unexpected server response: 401" in its error event, which we can trust.
    const unauthorized =
      code === CloseCode.unauthorized || (!this.socketOpened && /\b401\b/.test(this.socketError));
    if (unauthorized && !this.options.getToken) {
      const err = new RelayError(
        'unauthorized',
        'the server refused the credentials and there is no getToken',
      );
      this.host.disconnected({ code, reason });
      this.host.error(err);
      this.host.giveUp(err);
      return;
    }
    if (unauthorized) this.rejectedToken = this.tokenInUse;
    this.host.lost(code);
    // Enough WebSocket attempts in a row failed before welcome: go on over long polling at once.
    const blocked = !unauthorized && wsBlocked(code, this.socketError, code === CLIENT_GAVE_UP);
    const fellBack = this.transports.ended(this.socketTransport, wasWelcomed, blocked);

    // The server came back after a crash and went away again: start over from the minimum delay.
    if (wasWelcomed && this.resetOnCrash && ABNORMAL_CLOSES.has(code)) {
      this.resetOnCrash = false;
      this.backoff.reset();
    }

    // Draining is orderly: go elsewhere at once. Only once per welcome, though, so a fleet that
    // keeps answering 1012 is retried with back-off rather than in a tight loop.
    let delay: number;
    if (code === CloseCode.draining && !this.drainRetried) {
      this.drainRetried = true;
      delay = 0;
    } else if (fellBack) {
      delay = 0;
    } else {
      delay = this.backoff.next();
    }
    this.scheduleRetry(delay);
    this.host.setState('reconnecting');
    this.host.disconnected({ code, reason, retryInMs: delay });
    if (unauthorized) {
      this.host.error(
        new RelayError(
          'unauthorized',
          'the server refused the token; waiting for getToken() to return a new one',
        ),
      );
    }
  }

  /** While on long polling: try a WebSocket every wsRetryMs; once one reaches welcome, switch to it. */
  private scheduleProbe(): void {
    if (this.probeTimer !== undefined || this._stopped) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      if (this._stopped || !this.transports.shouldProbe) return;
      const url = new URL(this.options.url);
      if (this.tokenInUse !== undefined) url.searchParams.set('token', this.tokenInUse);
      else if (this.options.userId !== undefined) url.searchParams.set('user_id', this.options.userId);
      const cursor = this.host.cursor();
      const hello = JSON.stringify({
        type: 'hello',
        payload: cursor === undefined ? {} : { last_msg_id: cursor },
      });
      const probe = probeWebSocket(
        this.options.WebSocket,
        url.toString(),
        hello,
        this.options.connectTimeoutMs,
      );
      this.probe = probe;
      void probe.result.then((ok) => {
        if (this.probe !== probe) return;
        this.probe = undefined;
        if (this._stopped || !this.transports.shouldProbe) return;
        if (!ok) return this.scheduleProbe();
        this.transports.webSocketWorks();
        this.switchTransport();
      });
    }, this.options.wsRetryMs);
  }

  private stopProbing(): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    const probe = this.probe;
    this.probe = undefined;
    probe?.cancel();
  }

  /**
   * Leaves the current connection for the chosen transport at once: like a lost connection (sends
   * in flight go again after the next welcome, with the same refs), without back-off.
   */
  private switchTransport(): void {
    const ws = this.ws;
    if (!ws) return this.reconnectNow();
    abandon(ws, 1000, 'switching transport');
    this.ws = undefined;
    this._welcomed = false;
    this.clearConnectionTimers();
    this.host.lost(1000);
    this.host.setState('reconnecting');
    void this.attempt();
  }

  private scheduleRetry(delay: number): void {
    if (this._stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.attempt(), delay);
  }

  private clearConnectionTimers(): void {
    clearTimeout(this.connectTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.healthyTimer);
    this.connectTimer = this.pingTimer = this.idleTimer = this.healthyTimer = undefined;
  }

  private newBackoff(): Backoff {
    const { backoffBaseMs: baseMs, backoffCapMs: capMs, random } = this.options;
    return new Backoff({ baseMs, capMs, random });
  }
}
