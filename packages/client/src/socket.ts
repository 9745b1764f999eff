/**
 * The part of the WebSocket API the client uses. Both the browser's WebSocket and the `ws`
 * package's class satisfy it, so neither is a dependency: the caller passes one in (or the
 * global one is used).
 */

/**
 * An event-handler property. Declared through a method signature so its parameter is compared
 * bivariantly: the DOM and `ws` type their events more richly than the fields we read, and a
 * plain function type would reject them under strictFunctionTypes.
 */
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'] | null;

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown>;
  onmessage: Handler<{ data: unknown }>;
  /** Browsers give no detail; `ws` puts e.g. "Unexpected server response: 401" in `message`. */
  onerror: Handler<unknown>;
  onclose: Handler<{ code: number; reason: string }>;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** readyState value of an open socket (the same in every implementation). */
export const OPEN = 1;

/** The runtime's own WebSocket (browsers, Node >= 22), or undefined. */
export function globalWebSocket(): WebSocketConstructor | undefined {
  return (globalThis as unknown as { WebSocket?: WebSocketConstructor }).WebSocket;
}

// Handlers installed on a socket we have let go of. Not null: `ws` throws an unhandled 'error'
// event (crashing Node) when a socket that has no error listener is closed before it opened.
const ignore = (): void => undefined;

/** Stops listening to `ws` and closes it without waiting (a dead peer may never finish the close handshake). */
export function abandon(ws: WebSocketLike, code: number, reason: string): void {
  ws.onopen = ignore;
  ws.onmessage = ignore;
  ws.onerror = ignore;
  ws.onclose = ignore;
  try {
    ws.close(code, reason);
  } catch {
    // Already closed, or an implementation that rejects the code: either way it is gone.
  }
}
