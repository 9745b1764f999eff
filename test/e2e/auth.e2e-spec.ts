import { SignJWT } from 'jose';
import { putConversation, startTestApp, TestApp } from '../support/test-app';
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
      const soon = Math.floor(Date.now() / 1000) + 1;
      const { client } = await TestClient.connect(`${t2.ws}?token=${await sign('jane', SECRET, soon)}`);
      expect(await client.waitClosed(4_000)).toBe(4001);
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
