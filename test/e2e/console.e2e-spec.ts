/**
 * The debug console in a real browser: Debian's headless Chromium driven by playwright-core loads
 * /console, takes the admin key in its form, looks up a user and a conversation, tails a
 * conversation, and shows the message a test WebSocket client sends. Needs /usr/bin/chromium
 * (.ci/run installs it); without it this suite fails, it is never skipped.
 */
import { existsSync } from 'node:fs';
import { Browser, chromium, Page } from 'playwright-core';
import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { TestClient } from '../support/ws-client';
import { signHs256 } from '../support/jwt';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SECRET = 'console-browser-secret-that-is-long-enough-for-hs256';
const KEY = 'console-browser-admin-key-long-enough-0123456789';
const WAIT = 15_000;
jest.setTimeout(60_000);

const sign = (sub: string) => signHs256(SECRET, sub);

describe('debug console in headless Chromium', () => {
  let t: TestApp;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM}: the console test needs a real browser. Install Debian's package ` +
          `(apt-get update && apt-get install -y chromium; .ci/run does this) or set CHROMIUM_PATH.`,
      );
    }
    t = await startTestApp({ AUTH_MODE: 'jwt', JWT_SECRET: SECRET, ADMIN_API_KEY: KEY });
    await putConversation(t.http, 'lobby', ['ann', 'bob'], { authorization: `Bearer ${KEY}` });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
    page = await browser.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  const text = (selector: string, contains: string) =>
    page.locator(selector, { hasText: contains }).first().waitFor({ timeout: WAIT });

  it('asks for the key, then shows nodes, a user, a conversation and a live tail', async () => {
    await page.goto(`${t.http}/console`);
    // Without the key the API refuses, and the page says so.
    await text('#overview', '401');

    await page.fill('#key', KEY);
    await page.click('#refresh');
    await text('#overview', `${t.config.nodeId}: 0 connections`);

    await page.selectOption('#tail-kind', 'conversation');
    await page.fill('#tail-id', 'lobby');
    await page.click('#tail-start');
    await text('#tail-status', 'tailing conversation lobby');

    const { client: ann } = await TestClient.connect(`${t.ws}?token=${await sign('ann')}`);
    const { client: bob } = await TestClient.connect(`${t.ws}?token=${await sign('bob')}`);
    try {
      const ack = await ann.sendMessage('lobby', { text: 'hello from the test client' }, 'browser-1');
      expect(ack.type).toBe('ack');
      await text('#tail-log li.ack', ack.msg_id!);
      await text('#tail-log li', 'ann -> bob');
      await text('#tail-log li', 'hello from the test client');
      const delivered = await bob.next((f) => f.type === 'message');

      await page.fill('#user-id', 'bob');
      await page.click('#user-go');
      await text('#user-out', delivered.msg_id!); // the head cursor
      await page.click('#refresh');
      await text('#overview', `${t.config.nodeId}: 2 connections`);

      await page.fill('#conv-id', 'lobby');
      await page.click('#conv-go');
      await text('#conv-out', '"bob"');

      await page.click('#tail-stop');
      await text('#tail-status', 'not tailing');
    } finally {
      ann.close();
      bob.close();
    }
    expect(pageErrors).toEqual([]);
  });
});
