import { connect } from '../src/index';
import type { ConnectOptions, RelayClient } from '../src/index';
import type { WebSocketLike } from '../src/socket';

export type Frame = { type: string; msg_id?: string; payload?: Record<string, unknown> };

/**
 * A scriptable WebSocket: records what the client sends and lets a test play the server's part
 * (open, frames, closes). Nothing happens on its own, so a test controls every event.
 */
export class FakeWebSocket implements WebSocketLike {
  static instances: FakeWebSocket[] = [];

  static get last(): FakeWebSocket {
    const ws = FakeWebSocket.instances.at(-1);
    if (!ws) throw new Error('no socket was created');
    return ws;
  }

  readyState = 0;
  readonly sent: Frame[] = [];
  /** Set when the client called close(). */
  closedWith: { code?: number; reason?: string } | undefined;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  /**
   * A scripted server: called with each frame the client sends, at the moment it is sent. It must
   * answer asynchronously (e.g. with setTimeout), as a real socket would.
   */
  onClientFrame: ((frame: Frame) => void) | undefined;

  constructor(readonly url: string) {
    FakeWebSocket.instances.push(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error(`send on a socket in state ${this.readyState}`);
    const frame = JSON.parse(data) as Frame;
    this.sent.push(frame);
    this.onClientFrame?.(frame);
  }

  /** Like a real socket the close event comes later (or never, on a dead network): tests decide. */
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 2;
  }

  // ---- the server's side ----

  get query(): URLSearchParams {
    return new URL(this.url).searchParams;
  }

  sentOfType(type: string): Frame[] {
    return this.sent.filter((f) => f.type === type);
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame: Frame | string): void {
    this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
  }

  welcome(
    payload: Partial<{
      heartbeat_ms: number;
      recovered: boolean;
      user_id: string;
      node_id: string;
      cursor: string;
    }> = {},
  ): void {
    this.receive({
      type: 'welcome',
      payload: { user_id: 'u1', node_id: 'n1', heartbeat_ms: 25_000, recovered: true, ...payload },
    });
  }

  /** Opens and welcomes: the usual successful handshake. */
  accept(payload?: Parameters<FakeWebSocket['welcome']>[0]): void {
    this.open();
    this.welcome(payload);
  }

  deliver(cursor: string, id: string, body: unknown = {}, conversationId = 'c1'): void {
    this.receive({
      type: 'message',
      msg_id: cursor,
      payload: { id, conversation_id: conversationId, from: 'u2', ts: 1, body },
    });
  }

  ack(ref: string, id = `m-${ref}`, conversationId = 'c1'): void {
    this.receive({ type: 'ack', msg_id: id, payload: { ref, conversation_id: conversationId, ts: 42 } });
  }

  /** An error answer to the send with this ref. */
  refuse(ref: string, code: string, message = code): void {
    this.receive({ type: 'error', msg_id: ref, payload: { code, message } });
  }

  serverClose(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** An upgrade refused before open, as `ws` reports it (browsers give no message). */
  failBeforeOpen(message = ''): void {
    this.readyState = 3;
    this.onerror?.({ message });
    this.onclose?.({ code: 1006, reason: '' });
  }
}

/** Lets pending promise callbacks (storage, getToken) run, with fake timers installed. */
export const settle = (): Promise<void> => jest.advanceTimersByTimeAsync(0);

/** connect() with the fake socket and deterministic jitter (random = 0.5 unless given). */
export function fakeConnect(options: Partial<ConnectOptions> = {}): RelayClient {
  return connect({
    url: 'ws://relay.test/ws',
    userId: 'u1',
    WebSocket: FakeWebSocket,
    random: () => 0.5,
    // These suites drive one fake WebSocket; the long-polling fallback has its own tests.
    transports: ['websocket'],
    ...options,
  });
}

/** A client that has completed its first handshake. */
export async function openClient(
  options: Partial<ConnectOptions> = {},
): Promise<{ client: RelayClient; ws: FakeWebSocket }> {
  const client = fakeConnect(options);
  await settle();
  const ws = FakeWebSocket.last;
  ws.accept();
  return { client, ws };
}

export function resetFakes(): void {
  FakeWebSocket.instances = [];
}
