import { IncomingMessage } from 'node:http';
import { loadConfig } from '../config/app-config';
import { Config } from '../config/config.module';
import { NodeStatus } from '../health/node-status';
import { MetricsService } from '../metrics/metrics.service';
import { AdmissionResult, AdmissionService, MAX_IP_BUCKETS } from './admission.service';
import { AuthResult, AuthService } from './auth.service';

/** An auth stand-in: `?user=<id>` authenticates, `?fail=<why>` refuses, `hold` parks until released. */
class FakeAuth {
  held: (() => void)[] = [];
  async authenticate(req: IncomingMessage): Promise<AuthResult> {
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    if (q.has('hold')) await new Promise<void>((resolve) => this.held.push(resolve));
    const fail = q.get('fail');
    if (fail) return { failure: fail as 'token expired' };
    return { principal: { userId: q.get('user') ?? 'u', expiresAt: null } };
  }
}

function setup(env: Record<string, string> = {}) {
  const config = loadConfig({ NODE_ENV: 'test', ...env }) as Config;
  const status = new NodeStatus();
  const metrics = new MetricsService();
  const auth = new FakeAuth();
  const admission = new AdmissionService(config, auth as unknown as AuthService, status, metrics);
  return { admission, status, metrics, auth };
}

function req(
  opts: { user?: string; ip?: string; origin?: string; xff?: string; query?: string } = {},
): IncomingMessage {
  const headers: Record<string, string> = {};
  if (opts.origin !== undefined) headers.origin = opts.origin;
  if (opts.xff !== undefined) headers['x-forwarded-for'] = opts.xff;
  return {
    url: `/ws?user=${opts.user ?? 'u'}${opts.query ?? ''}`,
    headers,
    socket: { remoteAddress: opts.ip ?? '10.0.0.1' },
  } as unknown as IncomingMessage;
}

/** Admits and completes the upgrade the way the gateway server does. */
async function connect(admission: AdmissionService, r: IncomingMessage): Promise<AdmissionResult> {
  const verdict = await admission.admit(r);
  if (verdict.ok) admission.admitted(verdict.principal.userId, verdict.ip);
  return verdict;
}

const status = (v: AdmissionResult) => (v.ok ? 101 : v.status);
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

async function refusedCount(metrics: MetricsService, reason: string): Promise<number> {
  const { values } = await metrics.upgradesRefused.get();
  return values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

afterEach(() => jest.restoreAllMocks());

describe('AdmissionService', () => {
  it('checks draining first, then Origin, then the attempt rate', async () => {
    const {
      admission,
      status: node,
      metrics,
    } = setup({
      ALLOWED_ORIGINS: 'https://app.example',
      CONNECT_BURST_PER_IP: '1',
      CONNECT_RATE_PER_IP: '1',
    });
    expect(status(await admission.admit(req({ origin: 'https://evil.example' })))).toBe(403);
    expect(status(await connect(admission, req()))).toBe(101); // the only attempt token
    expect(status(await admission.admit(req()))).toBe(429);
    expect(status(await admission.admit(req({ origin: 'https://evil.example' })))).toBe(403);
    node.startDraining();
    expect(status(await admission.admit(req({ origin: 'https://evil.example' })))).toBe(503);
    expect(await refusedCount(metrics, 'draining')).toBe(1);
    expect(await refusedCount(metrics, 'origin_not_allowed')).toBe(2);
    expect(await refusedCount(metrics, 'ip_rate')).toBe(1);
  });

  it('matches Origins exactly (scheme, host, port), ignoring case and a trailing slash; no Origin is fine', async () => {
    const { admission } = setup({ ALLOWED_ORIGINS: 'https://app.example, http://localhost:8080/' });
    expect(status(await connect(admission, req({ origin: 'https://app.example' })))).toBe(101);
    expect(status(await connect(admission, req({ origin: 'HTTPS://APP.example' })))).toBe(101);
    expect(status(await connect(admission, req({ origin: 'http://localhost:8080' })))).toBe(101);
    expect(status(await connect(admission, req()))).toBe(101);
    for (const bad of ['http://app.example', 'https://app.example:444', 'http://localhost', 'null']) {
      expect(status(await admission.admit(req({ origin: bad })))).toBe(403);
    }
  });

  it('"*" allows any Origin', async () => {
    const { admission } = setup({ ALLOWED_ORIGINS: '*' });
    expect(status(await connect(admission, req({ origin: 'https://anything.example' })))).toBe(101);
  });

  it('refills the per-IP attempt bucket over time, separately per IP', async () => {
    let now = 1_000_000;
    jest.spyOn(Date, 'now').mockImplementation(() => now);
    const { admission } = setup({ CONNECT_BURST_PER_IP: '2', CONNECT_RATE_PER_IP: '2' });
    expect(status(await connect(admission, req()))).toBe(101);
    expect(status(await connect(admission, req()))).toBe(101);
    expect(status(await admission.admit(req()))).toBe(429);
    expect(status(await connect(admission, req({ ip: '10.0.0.2' })))).toBe(101);
    now += 499;
    expect(status(await admission.admit(req()))).toBe(429); // 0.998 of a token
    now += 2;
    expect(status(await connect(admission, req()))).toBe(101);
    expect(status(await admission.admit(req()))).toBe(429);
  });

  it('refused attempts take nothing: the bucket refills at the configured rate meanwhile', async () => {
    let now = 1_000_000;
    jest.spyOn(Date, 'now').mockImplementation(() => now);
    const { admission } = setup({ CONNECT_BURST_PER_IP: '1', CONNECT_RATE_PER_IP: '1' });
    expect(status(await connect(admission, req()))).toBe(101);
    for (let i = 0; i < 5; i++) {
      now += 100;
      expect(status(await admission.admit(req()))).toBe(429);
    }
    now += 600; // 1.1 s since the success: one token again
    expect(status(await connect(admission, req()))).toBe(101);
  });

  it('keeps the per-IP bucket map bounded under an address spray', async () => {
    const { admission } = setup({ MAX_CONNECTIONS: '1' });
    await connect(admission, req({ ip: '192.168.0.1' })); // fills the node: every later attempt is 503
    for (let i = 0; i < MAX_IP_BUCKETS + 500; i++) {
      const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      expect(status(await admission.admit(req({ ip })))).toBe(503);
    }
    expect(admission.trackedIps).toBeLessThanOrEqual(MAX_IP_BUCKETS);
  });

  it('drops buckets that have refilled completely', async () => {
    let now = 1_000_000;
    jest.spyOn(Date, 'now').mockImplementation(() => now);
    const { admission } = setup({ CONNECT_BURST_PER_IP: '2', CONNECT_RATE_PER_IP: '1' });
    for (let i = 0; i < 10; i++) await connect(admission, req({ ip: `10.0.1.${i}` }));
    expect(admission.trackedIps).toBe(10);
    now += 2_000; // every bucket full again
    for (let i = 0; i < 10; i++) await connect(admission, req({ ip: `10.0.2.${i}` }));
    expect(admission.trackedIps).toBe(10); // each new one swept older, full ones
  });

  it('refuses with 503 at MAX_CONNECTIONS and frees the slot on release', async () => {
    const { admission } = setup({ MAX_CONNECTIONS: '2' });
    await connect(admission, req({ user: 'a' }));
    await connect(admission, req({ user: 'b', ip: '10.0.0.2' }));
    admission.handshakeEnded();
    admission.handshakeEnded();
    expect(status(await admission.admit(req({ user: 'c', ip: '10.0.0.3' })))).toBe(503);
    admission.released('a', '10.0.0.1');
    expect(status(await connect(admission, req({ user: 'c', ip: '10.0.0.3' })))).toBe(101);
  });

  it('refuses with 503 at MAX_PENDING_HANDSHAKES until a hello arrives', async () => {
    const { admission, metrics } = setup({ MAX_PENDING_HANDSHAKES: '2' });
    await connect(admission, req({ user: 'a' }));
    await connect(admission, req({ user: 'b' }));
    expect((await metrics.pendingHandshakes.get()).values[0].value).toBe(2);
    const refused = await admission.admit(req({ user: 'c' }));
    expect(refused).toMatchObject({ ok: false, status: 503, reason: 'pending_handshakes' });
    admission.handshakeEnded(); // a's hello
    expect((await metrics.pendingHandshakes.get()).values[0].value).toBe(1);
    expect(status(await connect(admission, req({ user: 'c' })))).toBe(101);
  });

  it('caps live connections per IP (429) and per user (429, after auth)', async () => {
    const { admission } = setup({ MAX_CONNECTIONS_PER_IP: '2', MAX_CONNECTIONS_PER_USER: '2' });
    await connect(admission, req({ user: 'a' }));
    await connect(admission, req({ user: 'b' }));
    expect(await admission.admit(req({ user: 'c' }))).toMatchObject({
      status: 429,
      reason: 'ip_connections',
    });
    await connect(admission, req({ user: 'a', ip: '10.0.0.2' }));
    expect(await admission.admit(req({ user: 'a', ip: '10.0.0.3' }))).toMatchObject({
      status: 429,
      reason: 'user_connections',
    });
    admission.released('a', '10.0.0.1');
    expect(status(await connect(admission, req({ user: 'a', ip: '10.0.0.3' })))).toBe(101);
    expect(status(await connect(admission, req({ user: 'c' })))).toBe(101); // 10.0.0.1 has room again
  });

  it('refuses a bad token with 401 without Origin, and accept-and-close 4001 with one', async () => {
    const { admission, metrics } = setup({ MAX_CONNECTIONS_PER_IP: '1' });
    expect(await admission.admit(req({ query: '&fail=token expired' }))).toEqual({
      ok: false,
      status: 401,
      reason: 'unauthorized',
    });
    expect(await admission.admit(req({ query: '&fail=token expired', origin: 'https://a.example' }))).toEqual(
      {
        ok: false,
        status: 401,
        reason: 'unauthorized',
        closeWith: { code: 4001, reason: 'unauthorized: token expired' },
      },
    );
    expect(await refusedCount(metrics, 'unauthorized')).toBe(2);
    // Refusals hold no slot: the IP's single connection is still available.
    expect(status(await connect(admission, req()))).toBe(101);
  });

  it('concurrent upgrades cannot overshoot the per-user cap while authenticating', async () => {
    const { admission, auth } = setup({ MAX_CONNECTIONS_PER_USER: '2' });
    const verdicts = Promise.all([1, 2, 3, 4].map(() => admission.admit(req({ user: 'a', query: '&hold' }))));
    while (auth.held.length < 4) await nextTurn();
    for (const release of auth.held) release();
    expect((await verdicts).map(status).sort()).toEqual([101, 101, 429, 429]);
  });

  it('concurrent upgrades cannot overshoot the per-IP cap while authenticating', async () => {
    const { admission, auth } = setup({ MAX_CONNECTIONS_PER_IP: '2' });
    const verdicts = [1, 2, 3].map((i) => admission.admit(req({ user: `u${i}`, query: '&hold' })));
    while (auth.held.length < 2) await nextTurn();
    expect(status(await verdicts[2])).toBe(429);
    for (const release of auth.held) release();
    expect((await Promise.all(verdicts)).map(status)).toEqual([101, 101, 429]);
  });

  it('refuses with 503 when the drain started while the upgrade was authenticating', async () => {
    const { admission, auth, status: node } = setup({ MAX_CONNECTIONS: '1' });
    const verdict = admission.admit(req({ query: '&hold' }));
    while (auth.held.length < 1) await nextTurn();
    node.startDraining();
    auth.held[0]();
    expect(await verdict).toMatchObject({ ok: false, status: 503, reason: 'draining' });
  });

  it('a granted upgrade that never completes gives its slots back', async () => {
    const { admission } = setup({ MAX_CONNECTIONS_PER_USER: '1', MAX_CONNECTIONS: '1' });
    expect(status(await admission.admit(req({ user: 'a' })))).toBe(101); // no admitted(): socket died
    await nextTurn();
    expect(status(await connect(admission, req({ user: 'a' })))).toBe(101);
    expect(status(await admission.admit(req({ user: 'b' })))).toBe(503);
  });

  it('shrinks the hello timeout once pending handshakes pass the soft limit (floor 1 s)', async () => {
    const { admission } = setup({ HANDSHAKE_TIMEOUT_MS: '10000', PREHELLO_SOFT_LIMIT: '4' });
    const timeouts: number[] = [];
    for (let i = 0; i < 50; i++) {
      await connect(admission, req({ user: `u${i}` }));
      timeouts.push(admission.handshakeTimeoutMs());
    }
    expect(timeouts.slice(0, 4)).toEqual([10_000, 10_000, 10_000, 10_000]);
    expect(timeouts[4]).toBe(8_000); // 10 000 * 4 / 5
    expect(timeouts[9]).toBe(4_000);
    expect(timeouts[49]).toBe(1_000);
    for (let i = 0; i < 50; i++) admission.handshakeEnded();
    expect(admission.handshakeTimeoutMs()).toBe(10_000);
  });

  it('never lengthens a short base timeout', () => {
    const { admission } = setup({ HANDSHAKE_TIMEOUT_MS: '500', PREHELLO_SOFT_LIMIT: '1' });
    for (let i = 0; i < 3; i++) admission.admitted(`u${i}`, '10.0.0.1');
    expect(admission.handshakeTimeoutMs()).toBe(500);
  });

  describe('client IP', () => {
    it('is the socket address without trusted proxies, whatever X-Forwarded-For says', () => {
      const { admission } = setup();
      expect(admission.clientIp(req({ ip: '::ffff:10.1.2.3', xff: '1.1.1.1' }))).toBe('10.1.2.3');
    });

    it('is the N-th X-Forwarded-For entry from the right with TRUST_PROXY_HOPS=N', () => {
      const one = setup({ TRUST_PROXY_HOPS: '1' }).admission;
      const two = setup({ TRUST_PROXY_HOPS: '2' }).admission;
      const xff = '6.6.6.6, 1.1.1.1,2.2.2.2';
      expect(one.clientIp(req({ xff }))).toBe('2.2.2.2');
      expect(two.clientIp(req({ xff }))).toBe('1.1.1.1');
      expect(two.clientIp(req({ xff: '2.2.2.2' }))).toBe('10.0.0.1'); // fewer entries than hops
      expect(one.clientIp(req())).toBe('10.0.0.1');
      expect(one.clientIp(req({ xff: '1.1.1.1, not-an-ip' }))).toBe('10.0.0.1');
      expect(one.clientIp(req({ xff: '::ffff:3.3.3.3' }))).toBe('3.3.3.3');
      expect(one.clientIp(req({ xff: '2001:db8::1' }))).toBe('2001:db8::1');
    });

    it('gives forwarded addresses separate budgets', async () => {
      const { admission } = setup({ TRUST_PROXY_HOPS: '1', MAX_CONNECTIONS_PER_IP: '1' });
      expect(status(await connect(admission, req({ user: 'a', xff: '1.1.1.1' })))).toBe(101);
      expect(status(await connect(admission, req({ user: 'b', xff: '2.2.2.2' })))).toBe(101);
      expect(status(await admission.admit(req({ user: 'c', xff: '2.2.2.2' })))).toBe(429);
    });
  });
});
