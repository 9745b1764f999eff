/**
 * What a Connection and the gateway's socket wiring use of their transport. `ws`'s WebSocket satisfies
 * it as is; a long-polling session (poll/poll.sink.ts) is another implementation, so both transports
 * share Connection, ingress, egress, resume, heartbeat and the registry without knowing which is which.
 * readyState values are WebSocket's (CONNECTING 0, OPEN 1, CLOSING 2, CLOSED 3).
 */
export interface ConnectionSocket {
  readonly readyState: number;
  /** Bytes written but not yet taken by the client. */
  readonly bufferedAmount: number;
  send(text: string): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  ping(): void;
  on(event: 'pong', listener: () => void): unknown;
  once(event: 'close', listener: (code: number) => void): unknown;
}
