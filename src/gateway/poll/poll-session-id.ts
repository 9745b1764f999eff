import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ID_PATTERN } from '../../protocol/frames';

/** What a session id says about its session; any gateway holding the key can read it. */
export interface PollSessionClaims {
  /** The session's key: names its connections in the session map (`poll:<key>:<node>:<n>`). */
  key: string;
  userId: string;
  /** Issued at, ms since the epoch. */
  issuedAt: number;
}

const KEY_PATTERN = /^[A-Za-z0-9_-]{16}$/;
const MAX_SID_LENGTH = 512;

/**
 * Session ids are signed, self-describing tokens (`<base64url JSON>.<base64url HMAC-SHA256>`), so a
 * poll that a load balancer sends to another gateway node is accepted there without shared state.
 * The id is not a credential: every request also carries the user's own token, and its user must be
 * the one the id names.
 */
export class PollSessionIds {
  private readonly key: Buffer;

  /** `secret`: POLL_SESSION_SECRET; else derived from JWT_SECRET; else random (one node only). */
  constructor(secret: string | null, jwtSecret: string | undefined) {
    if (secret) this.key = Buffer.from(secret);
    else if (jwtSecret) this.key = createHmac('sha256', jwtSecret).update('relay poll session ids').digest();
    else this.key = randomBytes(32);
  }

  issue(userId: string, now = Date.now()): { sid: string; claims: PollSessionClaims } {
    const claims: PollSessionClaims = { key: randomBytes(12).toString('base64url'), userId, issuedAt: now };
    const body = Buffer.from(JSON.stringify({ k: claims.key, u: userId, t: now })).toString('base64url');
    return { sid: `${body}.${this.sign(body)}`, claims };
  }

  /** The claims of a genuine id; null for anything else (malformed, forged, too long). */
  verify(sid: string): PollSessionClaims | null {
    if (sid.length > MAX_SID_LENGTH) return null;
    const dot = sid.indexOf('.');
    if (dot <= 0) return null;
    const body = sid.slice(0, dot);
    const given = Buffer.from(sid.slice(dot + 1), 'base64url');
    const expected = Buffer.from(this.sign(body), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    try {
      const raw = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Record<string, unknown>;
      const { k, u, t } = raw;
      if (typeof k !== 'string' || !KEY_PATTERN.test(k)) return null;
      if (typeof u !== 'string' || !ID_PATTERN.test(u) || typeof t !== 'number') return null;
      return { key: k, userId: u, issuedAt: t };
    } catch {
      return null;
    }
  }

  private sign(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}
