import { generateKeyPair, SignJWT } from 'jose';
import WebSocket from 'ws';
import { connect } from '../../packages/client/src/index';
import type { RelayError } from '../../packages/client/src/index';
import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';

const SECRET = 'test-secret-that-is-long-enough-for-hs256';
const ADMIN = 'admin-key-for-tests';

const sign = (sub: string, secret = SECRET, expiresIn: string | number = '1h') =>
  new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));

const ORIGIN = 'https://app.example';
const now = () => Math.floor(Date.now() / 1000);
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const hmac = new TextEncoder().encode(SECRET);

/** Tokens the server must refuse, and the reason it gives (in the 4001 close reason for browsers). */
const REFUSED: [string, string, () => Promise<string>][] = [
  [
    'a token without exp',
    'token has no exp',
    () => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('jane').setIssuedAt().sign(hmac),
  ],
  [
    'a token issued in the future',
    'token issued in the future',
    () =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('jane')
        .setIssuedAt(now() + 600)
        .setExpirationTime(now() + 1200)
        .sign(hmac),
  ],
  [
    'a token whose lifetime exceeds JWT_MAX_LIFETIME_SEC',
    'token lifetime too long',
    () =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('jane')
        .setIssuedAt()
        .setExpirationTime('2d')
        .sign(hmac),
  ],
  [
    'a token without iat that lives too long from now',
    'token lifetime too long',
    () =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('jane')
        .setExpirationTime('25h')
        .sign(hmac),
  ],
  [
    'an HS512 token made with the HS256 secret',
    'algorithm not allowed',
    () =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS512' })
        .setSubject('jane')
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(hmac),
  ],
  [
    'an RS256 token where only HS256 is allowed',
    'algorithm not allowed',
    async () =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'RS256' })
        .setSubject('jane')
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign((await generateKeyPair('RS256')).privateKey),
  ],
  [
    'a PS256 token where only HS256 is allowed',
    'algorithm not allowed',
    async () =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'PS256' })
        .setSubject('jane')
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign((await generateKeyPair('PS256')).privateKey),
  ],
  [
    'an unsigned token (alg "none")',
    'algorithm not allowed',
    async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'jane', iat: now(), exp: now() + 600 })}.`,
  ],
  [
    'a token not valid before a future nbf',
    'token not yet valid',
    () =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('jane')
        .setIssuedAt()
        .setNotBefore(now() + 600)
        .setExpirationTime('1h')
        .sign(hmac),
  ],
  ['an expired token', 'token expired', () => sign('jane', SECRET, now() - 60)],
  ['a forged token', 'invalid token', () => sign('jane', 'some-other-secret-of-sufficient-size')],
  ['no token at all', 'missing token', async () => ''],
];

describe('JWT authentication and the admin API (AUTH_MODE=jwt)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ AUTH_MODE: 'jwt', JWT_SECRET: SECRET, ADMIN_API_KEY: ADMIN });
  });
  afterAll(() => t.close());

  it('accepts a valid token and uses its sub as the user id', async () => {
    const { client, welcome } = await TestClient.connect(`${t.ws}?token=${await sign('jane')}`);
    expect(welcome.payload?.user_id).toBe('jane');
    client.terminate();
  });

  it.each([
    ['a forged token', () => sign('jane', 'some-other-secret-of-sufficient-size')],
    ['an expired token', () => sign('jane', SECRET, Math.floor(Date.now() / 1000) - 60)],
    ['garbage', async () => 'not.a.jwt'],
  ])('refuses %s with HTTP 401 before the upgrade', async (_name, token) => {
    await expect(TestClient.open(`${t.ws}?token=${await token()}`)).rejects.toThrow('HTTP 401');
  });

  it.each(REFUSED)('refuses %s with HTTP 401 when the upgrade has no Origin', async (_name, _why, token) => {
    await expect(TestClient.open(`${t.ws}?token=${await token()}`)).rejects.toThrow('HTTP 401');
  });

  it.each(REFUSED)(
    'with an Origin header (a browser), accepts %s and closes at once with 4001 "unauthorized: %s"',
    async (_name, why, token) => {
      const client = await TestClient.open(`${t.ws}?token=${await token()}`, { origin: ORIGIN });
      expect(await client.waitClosed()).toBe(4001);
      expect(client.closeReason).toBe(`unauthorized: ${why}`);
      expect(client.frames).toEqual([]);
    },
  );

  it('a valid token still works with an Origin header', async () => {
    const client = await TestClient.open(`${t.ws}?token=${await sign('jane')}`, { origin: ORIGIN });
    client.send({ type: 'hello', payload: {} });
    expect((await client.next((f) => f.type === 'welcome')).payload?.user_id).toBe('jane');
    client.terminate();
  });

  it('counts refusals by reason in /metrics', async () => {
    await expect(TestClient.open(`${t.ws}?token=${await REFUSED[0][2]()}`)).rejects.toThrow('HTTP 401');
    const text = await (await fetch(`${t.http}/metrics`)).text();
    expect(text).toMatch(/relay_auth_failures_total\{reason="token_has_no_exp"\} [1-9]/);
    expect(text).toMatch(/relay_upgrades_refused_total\{reason="unauthorized"\} [1-9]/);
  });

  it('the SDK in a browser-like setup (Origin sent) emits unauthorized for a refused static token and stops', async () => {
    /** `ws` with the Origin header a browser always sends. */
    class BrowserLikeWebSocket extends WebSocket {
      constructor(url: string) {
        super(url, { origin: ORIGIN });
      }
    }
    let sockets = 0;
    class CountingWebSocket extends BrowserLikeWebSocket {
      constructor(url: string) {
        super(url);
        sockets++;
      }
    }
    const client = connect({
      url: t.ws,
      token: await sign('jane', SECRET, now() - 60),
      WebSocket: CountingWebSocket,
      backoffBaseMs: 10,
    });
    const errors: RelayError[] = [];
    const closes: number[] = [];
    client.on('error', (e) => errors.push(e));
    client.on('disconnect', (d) => closes.push(d.code));
    await waitFor(() => client.state === 'closed', 5_000, 'the client to give up');
    expect(errors.map((e) => e.code)).toEqual(['unauthorized']);
    expect(closes).toEqual([4001]);
    expect(sockets).toBe(1);
  });

  it('refuses ?user_id= outside dev mode', async () => {
    await expect(TestClient.open(`${t.ws}?user_id=jane`)).rejects.toThrow('HTTP 401');
  });

  it('closes with 4001 when the token expires during the connection', async () => {
    const t2 = await startTestApp({
      AUTH_MODE: 'jwt',
      JWT_SECRET: SECRET,
      ADMIN_API_KEY: ADMIN,
      HEARTBEAT_MS: '100',
    });
    try {
      // 2-3 s ahead (exp is in whole seconds): far enough for the welcome on a loaded machine, which
      // a token 0-1 s ahead did not always leave time for.
      const soon = Math.floor(Date.now() / 1000) + 3;
      const { client } = await TestClient.connect(`${t2.ws}?token=${await sign('jane', SECRET, soon)}`);
      expect(await client.waitClosed(6_000)).toBe(4001);
    } finally {
      await t2.close();
    }
  });

  it('the directory API needs the admin key', async () => {
    const url = `${t.http}/v1/conversations/room`;
    const body = JSON.stringify({ members: ['jane', 'joe'] });
    const headers = { 'content-type': 'application/json' };
    expect((await fetch(url, { method: 'PUT', headers, body })).status).toBe(401);
    expect(
      (await fetch(url, { method: 'PUT', headers: { ...headers, authorization: 'Bearer wrong' }, body }))
        .status,
    ).toBe(401);
    await putConversation(t.http, 'room', ['jane', 'joe'], { authorization: `Bearer ${ADMIN}` });
    const got = await fetch(url, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(await got.json()).toEqual({ id: 'room', members: ['jane', 'joe'] });
  });
});

describe('built-in directory API (dev mode)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('creates, replaces, reads and deletes a conversation; changes apply to the next message at once', async () => {
    const url = `${t.http}/v1/conversations/team`;
    await putConversation(t.http, 'team', ['a', 'b']);
    expect(await (await fetch(url)).json()).toEqual({ id: 'team', members: ['a', 'b'] });
    const { client: a } = await TestClient.connect(`${t.ws}?user_id=a`);
    const { client: c } = await TestClient.connect(`${t.ws}?user_id=c`);
    expect((await c.sendMessage('team', 'hi', 'c1')).payload?.code).toBe('forbidden');
    await putConversation(t.http, 'team', ['a', 'b', 'c']);
    expect((await c.sendMessage('team', 'now?', 'c2')).type).toBe('ack');
    expect((await a.messages(1))[0].payload?.body).toBe('now?');
    expect((await fetch(url, { method: 'DELETE' })).status).toBe(204);
    expect((await fetch(url)).status).toBe(404);
    expect((await fetch(url, { method: 'DELETE' })).status).toBe(404);
    expect((await c.sendMessage('team', 'gone', 'c3')).payload?.code).toBe('not_found');
    a.terminate();
    c.terminate();
  });

  it('rejects a malformed body with 400', async () => {
    const res = await fetch(`${t.http}/v1/conversations/x`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members: 'nope' }),
    });
    expect(res.status).toBe(400);
  });
});
