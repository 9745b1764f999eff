import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { loadConfig } from '../config/app-config';
import { mintDevToken, parseTtl, TokenError } from './dev-token';

const SECRET = 'a-dev-secret-that-is-long-enough-for-hs256';
const auth = (env: Record<string, string> = {}) =>
  loadConfig({ AUTH_MODE: 'jwt', JWT_SECRET: SECRET, ADMIN_API_KEY: 'admin', ...env }).auth;

describe('dev token', () => {
  it.each([
    ['90', 90],
    ['90s', 90],
    ['15m', 900],
    ['1h', 3600],
    ['2d', 172800],
    ['', undefined],
    ['0', undefined],
    ['1w', undefined],
    ['-5m', undefined],
  ])('reads the ttl %p', (text, seconds) => {
    expect(parseTtl(text)).toBe(seconds);
  });

  it('signs HS256 with sub, iat, exp (1 h by default) and the configured iss/aud', async () => {
    const token = await mintDevToken(
      auth({ JWT_ISSUER: 'me', JWT_AUDIENCE: 'relay' }),
      'alice',
      undefined,
      1000,
    );
    expect(decodeProtectedHeader(token).alg).toBe('HS256');
    expect(decodeJwt(token)).toEqual({ sub: 'alice', iat: 1000, exp: 4600, iss: 'me', aud: 'relay' });
    const { payload } = await jwtVerify(token, new TextEncoder().encode(SECRET), {
      issuer: 'me',
      audience: 'relay',
      currentDate: new Date(2000 * 1000),
    });
    expect(payload.sub).toBe('alice');
  });

  it('stays within JWT_MAX_LIFETIME_SEC', async () => {
    const short = auth({ JWT_MAX_LIFETIME_SEC: '600' });
    expect(decodeJwt(await mintDevToken(short, 'bob', undefined, 0)).exp).toBe(600);
    await expect(mintDevToken(short, 'bob', 601)).rejects.toThrow(
      /longer than JWT_MAX_LIFETIME_SEC \(600 s\)/,
    );
  });

  it('refuses without JWT_SECRET and for ids the service would refuse', async () => {
    await expect(mintDevToken(loadConfig({}).auth, 'bob')).rejects.toThrow(TokenError);
    await expect(mintDevToken(auth(), 'bob smith')).rejects.toThrow(/user id must match/);
  });
});
