import { OPEN, abandon } from './socket.js';
import type { WebSocketConstructor, WebSocketLike } from './socket.js';

/** The transports the client can use, in order of preference. */
export type Transport = 'websocket' | 'longpoll';
export const TRANSPORTS: readonly Transport[] = ['websocket', 'longpoll'];

/**
 * Which transport the next connection attempt uses. WebSocket first; after `fallbackAfter` WebSocket
 * attempts in a row that ended without `welcome` (refused, closed early, timed out), long polling;
 * back to WebSocket when a background probe reaches `welcome` (see probeWebSocket).
 */
export class TransportChoice {
  private failures = 0;
  private _current: Transport;

  constructor(
    private readonly allowed: readonly Transport[],
    private readonly fallbackAfter: number,
  ) {
    this._current = allowed[0];
  }

  get current(): Transport {
    return this._current;
  }

  /** Long polling is in use and WebSocket is allowed: probe for it in the background. */
  get shouldProbe(): boolean {
    return this._current === 'longpoll' && this.allowed.includes('websocket');
  }

  /**
   * An attempt on `transport` ended; `welcomed`: it had reached welcome; `blocked`: it failed the way
   * a middlebox breaks WebSocket (see wsBlocked). True when the transport changed.
   */
  ended(transport: Transport, welcomed: boolean, blocked = false): boolean {
    if (transport !== 'websocket' || this._current !== 'websocket') return false;
    if (welcomed) {
      this.failures = 0;
      return false;
    }
    if (!blocked) return false;
    if (++this.failures < this.fallbackAfter || !this.allowed.includes('longpoll')) return false;
    this._current = 'longpoll';
    return true;
  }

  /** A WebSocket reached welcome (the probe): use it again. */
  webSocketWorks(): void {
    this.failures = 0;
    this._current = 'websocket';
  }
}

/**
 * Opens a WebSocket, says `hello` (from the client's cursor, so the server replays little) and
 * resolves true once `welcome` arrives, false on anything else within `timeoutMs`; the socket is
 * closed either way. Used while on long polling to find out when WebSocket works again.
 */
export function probeWebSocket(
  Ctor: WebSocketConstructor,
  url: string,
  hello: string,
  timeoutMs: number,
): { result: Promise<boolean>; cancel(): void } {
  let ws: WebSocketLike | undefined;
  let settle: (ok: boolean) => void = () => undefined;
  const result = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => settle(false), timeoutMs);
    settle = (ok) => {
      clearTimeout(timer);
      if (ws) abandon(ws, 1000, 'probe done');
      settle = () => undefined;
      resolve(ok);
    };
    try {
      ws = new Ctor(url);
    } catch {
      return settle(false);
    }
    ws.onopen = () => {
      if (ws?.readyState === OPEN) ws.send(hello);
    };
    ws.onmessage = (event) => {
      if (typeof event.data === 'string' && /^\s*\{\s*"type"\s*:\s*"welcome"/.test(event.data)) settle(true);
    };
    ws.onerror = () => undefined;
    ws.onclose = () => settle(false);
  });
  return { result, cancel: () => settle(false) };
}

/** Network-level errors (the server is unreachable): long polling would fail the same way. */
const UNREACHABLE = /ECONNREFUSED|ECONNRESET|socket hang up|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN/;

/**
 * Whether a WebSocket attempt that ended before `welcome` failed the way a proxy or middlebox breaks
 * WebSocket: the upgrade answered with an HTTP error, the socket closed abnormally before welcome, or
 * no welcome within the connect timeout (`gaveUp`). A close the server chose (4xxx, 1011, 1012, 1013)
 * proves WebSocket works; an unreachable host (when the runtime says so) is not the transport's fault.
 */
export function wsBlocked(code: number, errorMessage: string, gaveUp: boolean): boolean {
  if (gaveUp) return true;
  if (code !== 1006 && code !== 1002 && code !== 1005 && code !== 1015) return false;
  return !UNREACHABLE.test(errorMessage);
}
