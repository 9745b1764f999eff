/**
 * The SDK in a real browser (issue 12): Debian's headless Chromium, driven by playwright-core, loads a
 * page from another origin that imports the SDK bundle (`npm run build --workspace packages/client`)
 * and chats over each transport: one client with `transports: ['longpoll']` (fetch, CORS preflight),
 * one with `['websocket']`, and a Node WebSocket client. Needs /usr/bin/chromium (or CHROMIUM_PATH).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';
import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ROOT = join(__dirname, '..', '..');
const BUNDLE = join(ROOT, 'packages/client/dist/relay-client.bundle.js');
jest.setTimeout(120_000);

const PAGE = `<!doctype html><html><body><script type="module">
import { connect } from './relay-client.bundle.js';
window.clients = {};
window.start = async (name, url, userId, transports) => {
  const c = connect({ url, userId, transports });
  const state = { client: c, messages: [], transports: [], errors: [] };
  c.on('message', (m) => state.messages.push(m.body));
  c.on('transport', (t) => state.transports.push(t));
  c.on('error', (e) => state.errors.push(String(e.code) + ': ' + e.message));
  c.on('disconnect', (d) => state.errors.push('disconnect ' + d.code + ' ' + d.reason));
  window.clients[name] = state;
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(name + ' did not open: ' + JSON.stringify(state.errors))), 15000));
  await Promise.race([c.whenOpen(), timeout]);
  return c.transport;
};
window.send = async (name, conv, body) => (await window.clients[name].client.send(conv, body)).id;
window.seen = (name) => ({ messages: window.clients[name].messages, transports: window.clients[name].transports, errors: window.clients[name].errors });
window.ready = true;
</script></body></html>`;

describe('SDK in headless Chromium over each transport', () => {
  let t: TestApp;
  let browser: Browser;
  let page: Page;
  let pageServer: Server;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM}: this test needs a real browser. Install Debian's package ` +
          `(apt-get update && apt-get install -y chromium) or set CHROMIUM_PATH.`,
      );
    }
    // The bundle as the package ships it, built from the current sources.
    execFileSync('npm', ['run', 'build', '--workspace', 'packages/client'], { cwd: ROOT, stdio: 'pipe' });
    const bundle = readFileSync(BUNDLE, 'utf8');
    t = await startTestApp();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
    page = await browser.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
    // The page comes from its own loopback server: another origin than the relay's (CORS applies),
    // in the same address space (Chromium refuses public -> loopback requests).
    pageServer = createServer((req, res) => {
      const js = (req.url ?? '').endsWith('.js');
      res.writeHead(200, { 'content-type': js ? 'text/javascript' : 'text/html' });
      res.end(js ? bundle : PAGE);
    });
    await new Promise<void>((r) => pageServer.listen(0, '127.0.0.1', r));
    const pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`;
    await page.goto(`${pageOrigin}/index.html`);
    await page.waitForFunction(() => (globalThis as unknown as { ready?: boolean }).ready === true);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    pageServer?.close();
    await t?.close();
  });

  it('a long-polling client and a WebSocket client in the page chat with a Node client', async () => {
    await putConversation(t.http, 'browser-room', ['lp-user', 'ws-user', 'node-user']);
    const { client: node } = await TestClient.connect(`${t.ws}?user_id=node-user`);
    try {
      const started = await page.evaluate(
        async ([ws]) => {
          const w = globalThis as unknown as { start(...a: unknown[]): Promise<string> };
          return [
            await w.start('lp', ws, 'lp-user', ['longpoll']),
            await w.start('ws', ws, 'ws-user', ['websocket']),
          ];
        },
        [t.ws],
      );
      expect(started).toEqual(['longpoll', 'websocket']);

      const send = (name: string, body: string) =>
        page.evaluate(
          ([n, b]) =>
            (globalThis as unknown as { send(...a: unknown[]): Promise<string> }).send(n, 'browser-room', b),
          [name, body],
        );
      expect(await send('lp', 'from long polling')).toEqual(expect.any(String));
      expect(await send('ws', 'from websocket')).toEqual(expect.any(String));
      expect((await node.sendMessage('browser-room', 'from node', 'n1', 10_000)).type).toBe('ack');

      type Seen = { messages: unknown[]; transports: string[]; errors: string[] };
      const seen = (name: string) =>
        page.evaluate((n) => (globalThis as unknown as { seen(n: string): Seen }).seen(n), name);
      await waitFor(
        async () => (await seen('lp')).messages.length === 3 && (await seen('ws')).messages.length === 3,
        15_000,
        'both page clients to get 3 messages',
      );
      const all = ['from long polling', 'from websocket', 'from node'];
      const lp = await seen('lp');
      const ws = await seen('ws');
      expect(lp).toEqual({ messages: all, transports: ['longpoll'], errors: [] });
      expect(ws).toEqual({ messages: all, transports: ['websocket'], errors: [] });
      expect((await node.messages(3, 10_000)).map((f) => f.payload?.body)).toEqual(all);
      expect(pageErrors).toEqual([]);
    } finally {
      node.close();
    }
  });
});
