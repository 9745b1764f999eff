/**
 * The SDK against the real `ws` package (the Node 20 setup), over real sockets, with a minimal
 * stand-in server. Checks what the fake socket cannot: that ws's class fits the WebSocket option,
 * that its events carry what we read, and that HTTP 401 and abandoned handshakes behave.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { connect } from '../src/index';
import type { ConnectionState, Message, RelayClient, RelayError } from '../src/index';

type Frame = { type: string; msg_id?: string; payload?: Record<string, unknown> };

let http: Server;
let wss: WebSocketServer;
let url: string;
/** What the test server does with an upgrade request. */
let onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
const clients: RelayClient[] = [];
/** Upgraded sockets leave the http server's bookkeeping; track them so teardown can end them. */
const sockets: Duplex[] = [];

beforeEach(async () => {
  wss = new WebSocketServer({ noServer: true });
  http = createServer();
  http.on('upgrade', (req, socket, head) => {
    sockets.push(socket);
    onUpgrade(req, socket, head);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}/ws`;
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const ws of wss.clients) ws.terminate();
  for (const socket of sockets.splice(0)) socket.destroy();
  await new Promise((resolve) => wss.close(resolve));
  http.closeAllConnections();
  await new Promise((resolve) => http.close(resolve));
});

function open(options: Partial<Parameters<typeof connect>[0]>): RelayClient {
  const client = connect({ url, userId: 'u1', WebSocket, ...options });
  clients.push(client);
  return client;
}

function nextState(client: RelayClient, wanted: ConnectionState): Promise<void> {
  return new Promise((resolve) => {
    const off = client.on('state', (s) => {
      if (s === wanted) {
        off();
        resolve();
      }
    });
  });
}

it('runs hello/welcome, send/ack, message/confirm over a real ws connection', async () => {
  const received: Frame[] = [];
  let confirmed!: () => void;
  const gotConfirm = new Promise<void>((resolve) => (confirmed = resolve));
  onUpgrade = (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => {
      expect(new URL(req.url!, 'http://x').searchParams.get('user_id')).toBe('u1');
      ws.on('message', (data) => {
        const frame = JSON.parse(String(data)) as Frame;
        received.push(frame);
        if (frame.type === 'hello') {
          ws.send(
            JSON.stringify({
              type: 'welcome',
              payload: { user_id: 'u1', node_id: 'n1', heartbeat_ms: 30_000, recovered: true },
            }),
          );
        } else if (frame.type === 'send') {
          ws.send(
            JSON.stringify({
              type: 'ack',
              msg_id: 'M1',
              payload: { ref: frame.msg_id, conversation_id: 'c1', ts: 7 },
            }),
          );
          ws.send(
            JSON.stringify({
              type: 'message',
              msg_id: 'E-000000000001',
              payload: { id: 'M1', conversation_id: 'c1', from: 'u1', ts: 7, body: 'hé' },
            }),
          );
        } else if (frame.type === 'confirm') {
          confirmed();
        }
      });
    });

  const client = open({ confirmIntervalMs: 10 });
  const messages: Message[] = [];
  client.on('message', (m) => messages.push(m));
  await client.whenOpen();
  await expect(client.send('c1', 'hé')).resolves.toMatchObject({ id: 'M1', ts: 7, conversationId: 'c1' });
  await gotConfirm;
  expect(messages.map((m) => m.body)).toEqual(['hé']);
  expect(received.map((f) => f.type)).toEqual(['hello', 'send', 'confirm']);
  expect(received[2]).toEqual({ type: 'confirm', msg_id: 'E-000000000001' });
});

it('treats an HTTP 401 on the upgrade as unauthorized (static token: closed)', async () => {
  onUpgrade = (_req, socket) => {
    socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  };
  const client = open({ token: 'expired', userId: undefined });
  const errors: RelayError[] = [];
  client.on('error', (e) => errors.push(e));
  await nextState(client, 'closed');
  expect(errors.map((e) => e.code)).toEqual(['unauthorized']);
});

it('treats accept-then-close 4001 (the answer to a browser) as unauthorized (static token: closed)', async () => {
  let upgrades = 0;
  onUpgrade = (req, socket, head) => {
    upgrades++;
    wss.handleUpgrade(req, socket, head, (ws) => ws.close(4001, 'unauthorized: token expired'));
  };
  const client = open({ token: 'expired', userId: undefined });
  const errors: RelayError[] = [];
  const reasons: string[] = [];
  client.on('error', (e) => errors.push(e));
  client.on('disconnect', (d) => reasons.push(`${d.code} ${d.reason}`));
  await nextState(client, 'closed');
  expect(errors.map((e) => e.code)).toEqual(['unauthorized']);
  expect(reasons).toEqual(['4001 unauthorized: token expired']);
  expect(upgrades).toBe(1);
});

it('abandons a handshake that never completes without crashing the process, and retries', async () => {
  let upgrades = 0;
  let secondAttempt!: () => void;
  const retried = new Promise<void>((resolve) => (secondAttempt = resolve));
  onUpgrade = () => {
    // Swallow the request: the client is left in CONNECTING until it gives up.
    if (++upgrades === 2) secondAttempt();
  };
  const client = open({ connectTimeoutMs: 50, backoffBaseMs: 10 });
  await retried;
  expect(client.state).toBe('reconnecting');
});
