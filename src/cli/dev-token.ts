import { SignJWT } from 'jose';
import { AppConfig } from '../config/app-config';
import { ID_PATTERN } from '../protocol/frames';

/** `90`, `90s`, `15m`, `1h`, `2d` -> seconds; undefined when unreadable. */
export function parseTtl(text: string): number | undefined {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  const sec = Number(m[1]) * unit;
  return sec > 0 ? sec : undefined;
}

export class TokenError extends Error {}

/**
 * A development token the service accepts: HS256 over JWT_SECRET, `sub` = the user, `iat`/`exp` within
 * JWT_MAX_LIFETIME_SEC (default lifetime 1 h, or the maximum when that is shorter), `iss`/`aud` when
 * the service checks them.
 */
export async function mintDevToken(
  auth: AppConfig['auth'],
  user: string,
  ttlSec?: number,
  nowSec = Math.floor(Date.now() / 1000),
): Promise<string> {
  if (!ID_PATTERN.test(user)) throw new TokenError(`user id must match ${ID_PATTERN.source}`);
  if (!auth.jwtSecret)
    throw new TokenError('JWT_SECRET is not set (in the environment or .env); dev tokens are HS256 over it');
  const ttl = ttlSec ?? Math.min(3600, auth.maxLifetimeSec);
  if (ttl > auth.maxLifetimeSec)
    throw new TokenError(`--ttl ${ttl} s is longer than JWT_MAX_LIFETIME_SEC (${auth.maxLifetimeSec} s)`);
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(user)
    .setIssuedAt(nowSec)
    .setExpirationTime(nowSec + ttl);
  if (auth.issuer) jwt.setIssuer(auth.issuer);
  if (auth.audience) jwt.setAudience(auth.audience);
  return jwt.sign(new TextEncoder().encode(auth.jwtSecret));
}
