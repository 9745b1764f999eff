/**
 * The SDK's transport fallback (issue 12) against the real server, through an HTTP proxy that refuses
 * WebSocket upgrades like a corporate proxy (400/502): the client falls back to long polling, chats,
 * and moves back to WebSocket once the proxy lets upgrades through; across both switches the app sees
 * every message exactly once, in order, and every send resolves once. Also: a long-polling-only client
 * (`transports: ['longpoll']`). Both engines (projects e2e and e2e-production).
 */
import WebSocket from 'ws';
import { connect, memoryStorage } from '../../packages/client/src/index';
import type { ConnectOptions, Message, RelayClient, Transport } from '../../packages/client/src/index';
import { HttpProxy } from '../support/http-proxy';
import { productionEngine, putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';

const LONG = productionEngine ? 40_000 : 15_000;
jest.setTimeout(productionEngine ? 150_000 : 90_000);

describe(`SDK long-polling fallback (${productionEngine ? 'production' : 'embedded'} engine)`, () => {
  let t: TestApp;
  const clients: RelayClient[] = [];
  const proxies: HttpProxy[] = [];
  const unique = (name: string) => `${name}-${Math.random().toString(36).slice(2, 9)}`;

  beforeAll(async () => {
    t = await startTestApp({ POLL_TIMEOUT_MS: '5000' });
  }, 120_000);

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    for (const p of proxies.splice(0)) await p.stop();
  });

  afterAll(async () => {
    await t?.close();
  });

  interface Peer {
    client: RelayClient;
    messages: Message[];
    transports: Transport[];
  }

  function peer(user: string, url: string, extra: Partial<ConnectOptions> = {}): Peer {
    const client = connect({ url, userId: user, WebSocket, backoffBaseMs: 50, backoffCapMs: 500, ...extra });
    clients.push(client);
    const p: Peer = { client, messages: [], transports: [] };
    client.on('message', (m) => p.messages.push(m));
    client.on('transport', (name) => p.transports.push(name));
    return p;
  }

  const bodies = (p: Peer) => p.messages.map((m) => m.body);

  it.each([502, 400])(
    'falls back to long polling behind a proxy that refuses upgrades with %i, and moves back when it allows them',
    async (refusal) => {
      const proxy = new HttpProxy(Number(new URL(t.http).port));
      await proxy.start();
      proxies.push(proxy);
      proxy.refuseUpgrades(refusal);
      const a = unique('a');
      const b = unique('b');
      const conv = unique('c');
      await putConversation(t.http, conv, [a, b]);
      const behind = peer(a, `ws://127.0.0.1:${proxy.port}/ws`, { wsRetryMs: 1500, fallbackAfter: 2 });
      const direct = peer(b, t.ws);
      await behind.client.whenOpen();
      await direct.client.whenOpen();
      expect(behind.client.transport).toBe('longpoll');
      expect(behind.transports).toEqual(['longpoll']);
      expect(proxy.upgradesRefused).toBeGreaterThanOrEqual(2);

      // Chat both ways over long polling.
      const sent: Promise<unknown>[] = [];
      for (let i = 0; i < 5; i++)
        sent.push(behind.client.send(conv, `a${i}`), direct.client.send(conv, `b${i}`));
      await Promise.all(sent);
      await waitFor(
        () => behind.messages.length === 10 && direct.messages.length === 10,
        LONG,
        'the first 10 messages',
      );

      // The proxy refuses with the other status for a while: still long polling.
      proxy.refuseUpgrades(refusal === 502 ? 400 : 502);
      for (let i = 5; i < 8; i++)
        sent.push(behind.client.send(conv, `a${i}`), direct.client.send(conv, `b${i}`));
      await Promise.all(sent);
      expect(behind.client.transport).toBe('longpoll');

      // Upgrades allowed: the background probe finds out and the client moves back to WebSocket,
      // while messages keep flowing in both directions.
      proxy.refuseUpgrades(null);
      let i = 8;
      await waitFor(
        async () => {
          await Promise.all([behind.client.send(conv, `a${i}`), direct.client.send(conv, `b${i}`)]);
          i++;
          return behind.transports.at(-1) === 'websocket';
        },
        LONG,
        'the move back to WebSocket',
      );
      for (let k = 0; k < 3; k++, i++)
        await Promise.all([behind.client.send(conv, `a${i}`), direct.client.send(conv, `b${i}`)]);
      expect(behind.transports).toEqual(['longpoll', 'websocket']);
      expect(proxy.upgradesPassed).toBeGreaterThanOrEqual(2); // the probe, then the connection

      const expected = 2 * i;
      await waitFor(
        () => behind.messages.length >= expected && direct.messages.length >= expected,
        LONG,
        'every message',
      );
      for (const p of [behind, direct]) {
        // Exactly once, and each sender's messages in its send order.
        expect(p.messages).toHaveLength(expected);
        expect(new Set(p.messages.map((m) => m.id)).size).toBe(expected);
        for (const who of ['a', 'b']) {
          const mine = bodies(p).filter((x) => String(x).startsWith(who));
          expect(mine).toEqual(Array.from({ length: i }, (_, k) => `${who}${k}`));
        }
      }
      expect(bodies(behind)).toEqual(bodies(direct));
    },
  );

  it('a long-polling-only client chats with a WebSocket client and resumes from its cursor', async () => {
    const a = unique('a');
    const b = unique('b');
    const conv = unique('c');
    await putConversation(t.http, conv, [a, b]);
    const poller = peer(a, t.ws, { transports: ['longpoll'] });
    const socket = peer(b, t.ws, { transports: ['websocket'] });
    await poller.client.whenOpen();
    await socket.client.whenOpen();
    expect(poller.transports).toEqual(['longpoll']);
    const ack = await poller.client.send(conv, 'hello over http');
    expect(ack.id).toEqual(expect.any(String));
    await socket.client.send(conv, 'hello over ws');
    await waitFor(() => poller.messages.length === 2 && socket.messages.length === 2, LONG, 'both messages');
    expect(bodies(poller)).toEqual(['hello over http', 'hello over ws']);
    expect(bodies(socket)).toEqual(bodies(poller));

    // A new client resuming from the first's cursor gets only what came after it.
    const cursor = poller.client.lastCursor!;
    await poller.client.close();
    await socket.client.send(conv, 'while away');
    const again = peer(a, t.ws, { transports: ['longpoll'], storage: memoryStorage(cursor) });
    await waitFor(() => again.messages.length === 1, LONG, 'the missed message');
    expect(bodies(again)).toEqual(['while away']);
  });
});
