/**
 * Connection admission on the WebSocket upgrade (embedded engine, dev auth): Origin allow-list, caps
 * per user and per IP, attempt rate per IP, the forwarded address behind trusted proxies, pre-hello
 * storms, and the drain. Each case gets the documented HTTP status (or close code).
 */
import { NodeStatus } from '../../src/health/node-status';
import { startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';

/** Opens `count` connections that complete the handshake. */
async function connectMany(url: (i: number) => string, count: number): Promise<TestClient[]> {
  const out: TestClient[] = [];
  for (let i = 0; i < count; i++) out.push((await TestClient.connect(url(i))).client);
  return out;
}

/** The HTTP status of a refused upgrade, or 101 when it was accepted (the socket is then closed). */
async function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  try {
    const client = await TestClient.open(url, { headers });
    client.terminate();
    return 101;
  } catch (err) {
    const m = /HTTP (\d+)/.exec((err as Error).message);
    if (!m) throw err;
    return Number(m[1]);
  }
}

async function metric(t: TestApp, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${t.http}/metrics`)).text();
  const m = pattern.exec(text);
  return m ? Number(m[1]) : 0;
}

describe('admission', () => {
  const apps: TestApp[] = [];
  const clients: TestClient[] = [];
  const start = async (env: Record<string, string>) => {
    const t = await startTestApp(env);
    apps.push(t);
    return t;
  };
  afterEach(async () => {
    for (const c of clients.splice(0)) c.terminate();
    await Promise.all(apps.splice(0).map((t) => t.close()));
  });

  it('answers an upgrade on any other path with HTTP 404, not a silently destroyed socket', async () => {
    const t = await start({});
    const base = t.ws.replace(/\/ws$/, '');
    expect(await upgradeStatus(`${base}/other?user_id=jane`)).toBe(404);
    expect(await upgradeStatus(`${base}/ws/extra?user_id=jane`)).toBe(404);
    expect(await upgradeStatus(`${base}/?user_id=jane`)).toBe(404);
    expect(await upgradeStatus(`${t.ws}?user_id=jane`)).toBe(101);
  });

  it('refuses an Origin outside ALLOWED_ORIGINS with 403, accepts an allowed one and requests without Origin', async () => {
    const t = await start({ ALLOWED_ORIGINS: 'https://app.example,http://localhost:5173' });
    const url = `${t.ws}?user_id=jane`;
    expect(await upgradeStatus(url, { origin: 'https://evil.example' })).toBe(403);
    expect(await upgradeStatus(url, { origin: 'http://app.example' })).toBe(403);
    const allowed = await TestClient.open(url, { origin: 'https://app.example' });
    clients.push(allowed);
    allowed.send({ type: 'hello', payload: {} });
    expect((await allowed.next((f) => f.type === 'welcome')).payload?.user_id).toBe('jane');
    expect(await upgradeStatus(url, { origin: 'http://localhost:5173' })).toBe(101);
    expect(await upgradeStatus(url)).toBe(101);
    expect(await metric(t, /relay_upgrades_refused_total\{reason="origin_not_allowed"\} (\d+)/)).toBe(2);
  });

  it('caps live connections per user (MAX_CONNECTIONS_PER_USER): the 4th gets 429, a freed slot is reusable', async () => {
    const t = await start({ MAX_CONNECTIONS_PER_USER: '3' });
    const url = `${t.ws}?user_id=jane`;
    const three = await connectMany(() => url, 3);
    clients.push(...three);
    expect(await upgradeStatus(url)).toBe(429);
    expect(await upgradeStatus(`${t.ws}?user_id=joe`)).toBe(101); // other users are not affected
    three[0].close();
    await three[0].waitClosed();
    // The server releases the slot when it sees the socket close (a moment after the client does).
    const fourth = await waitFor(() => TestClient.open(url), 5_000, 'a free slot for jane');
    clients.push(fourth);
    expect(await upgradeStatus(url)).toBe(429);
  });

  it('caps live connections per IP (MAX_CONNECTIONS_PER_IP) with 429', async () => {
    const t = await start({ MAX_CONNECTIONS_PER_IP: '2' });
    clients.push(...(await connectMany((i) => `${t.ws}?user_id=u${i}`, 2)));
    expect(await upgradeStatus(`${t.ws}?user_id=u9`)).toBe(429);
    expect(await metric(t, /relay_upgrades_refused_total\{reason="ip_connections"\} (\d+)/)).toBe(1);
  });

  it('limits connection attempts per IP (CONNECT_BURST_PER_IP, CONNECT_RATE_PER_IP) with 429', async () => {
    const t = await start({ CONNECT_BURST_PER_IP: '3', CONNECT_RATE_PER_IP: '1' });
    const started = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push(await upgradeStatus(`${t.ws}?user_id=u${i}`));
    const elapsedSec = (Date.now() - started) / 1000;
    expect(statuses.slice(0, 3)).toEqual([101, 101, 101]);
    // Whatever the machine's speed: at most the burst plus what refilled meanwhile got through.
    const accepted = statuses.filter((s) => s === 101).length;
    expect(accepted).toBeLessThanOrEqual(3 + Math.ceil(elapsedSec));
    expect(statuses.filter((s) => s !== 101).every((s) => s === 429)).toBe(true);
    expect(statuses).toContain(429);
  });

  it('with TRUST_PROXY_HOPS=1 budgets per X-Forwarded-For address; with 0 the header is ignored', async () => {
    const trusted = await start({ TRUST_PROXY_HOPS: '1', MAX_CONNECTIONS_PER_IP: '1' });
    const open = async (t: TestApp, user: string, xff: string) => {
      const c = await TestClient.open(`${t.ws}?user_id=${user}`, { headers: { 'x-forwarded-for': xff } });
      clients.push(c);
    };
    await open(trusted, 'a', '203.0.113.7');
    expect(
      await upgradeStatus(`${trusted.ws}?user_id=b`, { 'x-forwarded-for': '198.51.100.1, 203.0.113.7' }),
    ).toBe(429); // the rightmost entry is the one our proxy wrote
    await open(trusted, 'c', '203.0.113.8');
    expect(await upgradeStatus(`${trusted.ws}?user_id=d`, { 'x-forwarded-for': '203.0.113.8' })).toBe(429);

    const direct = await start({ MAX_CONNECTIONS_PER_IP: '1' });
    await open(direct, 'a', '203.0.113.7');
    expect(await upgradeStatus(`${direct.ws}?user_id=b`, { 'x-forwarded-for': '203.0.113.8' })).toBe(429);
  });

  it('closes a storm of silent connections with 4008 well before HANDSHAKE_TIMEOUT_MS once past PREHELLO_SOFT_LIMIT', async () => {
    const BASE = 4_000;
    const SOFT = 2;
    const N = 24;
    const t = await start({ HANDSHAKE_TIMEOUT_MS: String(BASE), PREHELLO_SOFT_LIMIT: String(SOFT) });
    const storm: { client: TestClient; openedAt: number; closedAt?: number }[] = [];
    for (let i = 0; i < N; i++) {
      const client = await TestClient.open(`${t.ws}?user_id=s${i}`);
      clients.push(client);
      const entry: (typeof storm)[number] = { client, openedAt: Date.now() };
      client.ws.on('close', () => (entry.closedAt = Date.now()));
      storm.push(entry);
    }
    const late = storm.slice(SOFT);
    await Promise.all(late.map((s) => s.client.waitClosed(BASE)));
    for (const [i, s] of late.entries()) {
      expect(s.client.closeCode).toBe(4008);
      const lifetime = s.closedAt! - s.openedAt;
      // Upgraded with SOFT + i + 1 pending: timeout max(1 s, BASE * SOFT / pending), far below BASE.
      const expected = Math.max(1_000, (BASE * SOFT) / (SOFT + i + 1));
      expect(lifetime).toBeLessThan(BASE);
      expect(lifetime).toBeLessThan(expected + 750);
    }
    // The first SOFT were upgraded without pressure: they still have the full timeout.
    expect(storm.slice(0, SOFT).every((s) => s.client.closeCode === null)).toBe(true);
    await waitFor(
      async () => (await metric(t, /relay_pending_handshakes (\d+)/)) === SOFT,
      2_000,
      'the pending-handshakes gauge to count only the first connections',
    );
  }, 15_000);

  it('answers 503 beyond MAX_PENDING_HANDSHAKES until a pending connection says hello', async () => {
    const t = await start({ MAX_PENDING_HANDSHAKES: '3' });
    const silent: TestClient[] = [];
    for (let i = 0; i < 3; i++) silent.push(await TestClient.open(`${t.ws}?user_id=p${i}`));
    clients.push(...silent);
    expect(await upgradeStatus(`${t.ws}?user_id=p9`)).toBe(503);
    silent[0].send({ type: 'hello', payload: {} });
    await silent[0].next((f) => f.type === 'welcome');
    expect(await upgradeStatus(`${t.ws}?user_id=p9`)).toBe(101);
    expect(await metric(t, /relay_upgrades_refused_total\{reason="pending_handshakes"\} (\d+)/)).toBe(1);
  });

  it('while draining: /health/ready is 503, a new upgrade gets 503 (not 404), connected clients get 1012', async () => {
    // The drain waits for clients to close (up to min(5 s, SHUTDOWN_TIMEOUT_MS / 2)); a client that
    // does not read (paused) never answers the close handshake, which holds the drain window open.
    const t = await startTestApp({ SHUTDOWN_TIMEOUT_MS: '8000' });
    const { client: stuck } = await TestClient.connect(`${t.ws}?user_id=stuck`);
    const { client: normal } = await TestClient.connect(`${t.ws}?user_id=normal`);
    clients.push(stuck, normal);
    expect((await fetch(`${t.http}/health/ready`)).status).toBe(200);
    stuck.ws.pause();

    const closing = t.app.close();
    try {
      await waitFor(() => t.app.get(NodeStatus).draining, 2_000, 'the drain to start');
      expect((await fetch(`${t.http}/health/ready`)).status).toBe(503);
      expect(await upgradeStatus(`${t.ws}?user_id=late`)).toBe(503);
      expect(await normal.waitClosed()).toBe(1012);
      expect((await fetch(`${t.http}/health/ready`)).status).toBe(503); // the drain is still going on
    } finally {
      stuck.terminate();
      await closing;
    }
  }, 15_000);
});
