import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { Logger } from '@nestjs/common';
import { IncomingMessage } from 'node:http';
import { createPrivateKey } from 'node:crypto';
import { loadConfig } from '../config/app-config';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { AuthService } from './auth.service';

const SECRET = 'unit-test-secret-that-is-long-enough-for-hs256';

function service(env: Record<string, string>) {
  const config = loadConfig({ NODE_ENV: 'test', AUTH_MODE: 'jwt', ADMIN_API_KEY: 'k', ...env }) as Config;
  const metrics = new MetricsService();
  const auth = new AuthService(config, metrics);
  auth.onModuleInit();
  return { auth, metrics };
}

const request = (token: string) => ({ url: `/ws?token=${token}` }) as IncomingMessage;

type SigningKey = Parameters<SignJWT['sign']>[0];
const token = (alg: string, key: SigningKey, sub = 'jane') =>
  new SignJWT({}).setProtectedHeader({ alg }).setSubject(sub).setIssuedAt().setExpirationTime('1h').sign(key);

async function verdict(auth: AuthService, jwt: string): Promise<string> {
  const result = await auth.authenticate(request(jwt));
  return 'principal' in result ? `ok:${result.principal.userId}` : result.failure;
}

describe('AuthService', () => {
  beforeAll(() => Logger.overrideLogger(false));
  afterAll(() => Logger.overrideLogger(['log', 'error', 'warn', 'debug', 'verbose', 'fatal']));

  it('JWT_SECRET allows HS256 only by default', async () => {
    const { auth } = service({ JWT_SECRET: SECRET });
    const key = new TextEncoder().encode(SECRET);
    expect(await verdict(auth, await token('HS256', key))).toBe('ok:jane');
    expect(await verdict(auth, await token('HS384', key))).toBe('algorithm not allowed');
  });

  it('takes the token from an Authorization: Bearer header (long polling)', async () => {
    const { auth } = service({ JWT_SECRET: SECRET });
    const jwt = await token('HS256', new TextEncoder().encode(SECRET));
    const bearer = (value: string) =>
      ({ url: '/v1/poll/open', headers: { authorization: value } }) as unknown as IncomingMessage;
    const outcome = async (req: IncomingMessage) => {
      const result = await auth.authenticate(req);
      return 'principal' in result ? `ok:${result.principal.userId}` : result.failure;
    };
    expect(await outcome(bearer(`Bearer ${jwt}`))).toBe('ok:jane');
    expect(await outcome(bearer(`Bearer ${jwt}x`))).toBe('invalid token');
    expect(await outcome(bearer(`Basic ${jwt}`))).toBe('missing token');
  });

  it('JWT_ALGORITHMS widens the allow-list', async () => {
    const { auth } = service({ JWT_SECRET: SECRET, JWT_ALGORITHMS: 'HS256,HS512' });
    const key = new TextEncoder().encode(SECRET);
    expect(await verdict(auth, await token('HS512', key))).toBe('ok:jane');
    expect(await verdict(auth, await token('HS384', key))).toBe('algorithm not allowed');
  });

  it.each([
    ['RSA', 'RS256', ['PS256']],
    ['EC P-256', 'ES256', []],
    ['EC P-384', 'ES384', []],
    ['Ed25519', 'EdDSA', []],
  ])('with a public key of type %s, allows %s by default', async (_kind, alg, refused) => {
    const pair = await generateKeyPair(alg, {
      crv: alg === 'EdDSA' ? 'Ed25519' : undefined,
      extractable: true,
    });
    const { auth } = service({ JWT_PUBLIC_KEY: await exportSPKI(pair.publicKey) });
    expect(await verdict(auth, await token(alg, pair.privateKey))).toBe('ok:jane');
    // A WebCrypto key is bound to its algorithm; the same key material as a KeyObject signs any RSA alg.
    const anyAlg = createPrivateKey(await exportPKCS8(pair.privateKey));
    for (const other of refused) {
      expect(await verdict(auth, await token(other, anyAlg))).toBe('algorithm not allowed');
    }
  });

  it('refuses an HS256 token signed with the RSA public key as the HMAC secret (key confusion)', async () => {
    const pair = await generateKeyPair('RS256');
    const pem = await exportSPKI(pair.publicKey);
    const { auth } = service({ JWT_PUBLIC_KEY: pem });
    expect(await verdict(auth, await token('HS256', new TextEncoder().encode(pem)))).toBe(
      'algorithm not allowed',
    );
  });

  it('a JWK set allows RS256 by default', async () => {
    const pair = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256' };
    const { auth } = service({ JWT_PUBLIC_KEY: JSON.stringify({ keys: [jwk] }) });
    const signed = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setSubject('jane')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(pair.privateKey);
    expect(await verdict(auth, signed)).toBe('ok:jane');
  });

  it('refuses at startup an allow-list the configured key cannot verify', async () => {
    expect(() => service({ JWT_SECRET: SECRET, JWT_ALGORITHMS: 'HS256,RS256' })).toThrow(/RS256/);
    expect(() => service({ JWT_SECRET: SECRET, JWT_ALGORITHMS: 'none' })).toThrow(/none/);
    const ec = await exportSPKI((await generateKeyPair('ES256')).publicKey);
    expect(() => service({ JWT_PUBLIC_KEY: ec, JWT_ALGORITHMS: 'RS256' })).toThrow(/RS256/);
    expect(() => service({ JWT_PUBLIC_KEY: 'not a key' })).toThrow();
  });

  it('honours the clock tolerance for exp, nbf and iat', async () => {
    const { auth } = service({ JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_SEC: '30' });
    const key = new TextEncoder().encode(SECRET);
    const now = Math.floor(Date.now() / 1000);
    const base = () => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('jane');
    expect(
      await verdict(
        auth,
        await base()
          .setIssuedAt(now - 600)
          .setExpirationTime(now - 10)
          .sign(key),
      ),
    ).toBe('ok:jane');
    expect(
      await verdict(
        auth,
        await base()
          .setIssuedAt(now - 600)
          .setExpirationTime(now - 60)
          .sign(key),
      ),
    ).toBe('token expired');
    expect(
      await verdict(
        auth,
        await base()
          .setIssuedAt(now + 10)
          .setExpirationTime(now + 600)
          .sign(key),
      ),
    ).toBe('ok:jane');
    expect(
      await verdict(
        auth,
        await base()
          .setIssuedAt(now + 60)
          .setExpirationTime(now + 600)
          .sign(key),
      ),
    ).toBe('token issued in the future');
    expect(
      await verdict(
        auth,
        await base()
          .setIssuedAt()
          .setNotBefore(now + 60)
          .setExpirationTime('1h')
          .sign(key),
      ),
    ).toBe('token not yet valid');
  });

  it('bounds the lifetime with JWT_MAX_LIFETIME_SEC', async () => {
    const { auth } = service({ JWT_SECRET: SECRET, JWT_MAX_LIFETIME_SEC: '3600' });
    const key = new TextEncoder().encode(SECRET);
    const now = Math.floor(Date.now() / 1000);
    const base = () => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('jane');
    expect(
      await verdict(
        auth,
        await base()
          .setIssuedAt(now)
          .setExpirationTime(now + 3600)
          .sign(key),
      ),
    ).toBe('ok:jane');
    expect(
      await verdict(
        auth,
        await base()
          .setIssuedAt(now)
          .setExpirationTime(now + 3601)
          .sign(key),
      ),
    ).toBe('token lifetime too long');
    // An old iat makes the lifetime long even if little of it is left.
    expect(
      await verdict(
        auth,
        await base()
          .setIssuedAt(now - 7200)
          .setExpirationTime(now + 60)
          .sign(key),
      ),
    ).toBe('token lifetime too long');
  });

  it('refuses a subject outside the user id charset', async () => {
    const { auth } = service({ JWT_SECRET: SECRET });
    const key = new TextEncoder().encode(SECRET);
    expect(await verdict(auth, await token('HS256', key, 'jane doe'))).toBe('invalid subject');
  });

  it('counts failures by reason and logs at most one line per reason per 10 s, with a count, never the token', async () => {
    let now = 1_000_000_000_000;
    jest.spyOn(Date, 'now').mockImplementation(() => now);
    const { auth, metrics } = service({ JWT_SECRET: SECRET });
    const lines: string[] = [];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    jest.spyOn((auth as any).logger, 'warn').mockImplementation((line: unknown) => lines.push(String(line)));
    const garbage = 'not.a.jwt';
    for (let i = 0; i < 5; i++) await auth.authenticate(request(garbage));
    await auth.authenticate(request(''));
    now += 10_000;
    await auth.authenticate(request(garbage));
    expect(lines).toEqual([
      'refused an upgrade: invalid token',
      'refused an upgrade: missing token',
      'refused an upgrade: invalid token (+4 more since the last line)',
    ]);
    expect(lines.join('\n')).not.toContain(garbage);
    const { values } = await metrics.authFailures.get();
    expect(Object.fromEntries(values.map((v) => [v.labels.reason, v.value]))).toEqual({
      invalid_token: 6,
      missing_token: 1,
    });
    jest.restoreAllMocks();
  });

  it('dev mode: ?user_id= authenticates without expiry', async () => {
    const config = loadConfig({ NODE_ENV: 'test' }) as Config;
    const auth = new AuthService(config, new MetricsService());
    auth.onModuleInit();
    expect(await auth.authenticate({ url: '/ws?user_id=jane' } as IncomingMessage)).toEqual({
      principal: { userId: 'jane', expiresAt: null },
    });
    expect(await auth.authenticate({ url: '/ws?user_id=a%20b' } as IncomingMessage)).toEqual({
      failure: 'invalid user_id',
    });
    expect(await auth.authenticate({ url: '/ws' } as IncomingMessage)).toEqual({ failure: 'missing token' });
  });
});
