import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type CryptoKey,
  errors,
  JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { createPublicKey, KeyObject } from 'node:crypto';
import { IncomingMessage } from 'node:http';
import { intern } from '../common/ids';
import { RateLimitedLog } from '../common/rate-limited-log';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { ID_PATTERN } from '../protocol/frames';

export interface Principal {
  userId: string;
  /** Token expiry in ms since epoch; the connection is closed with 4001 when it passes. */
  expiresAt: number | null;
}

/**
 * Why a request was refused. Safe to tell the client (it goes into the 4001 close reason): it names
 * the rule, never the token or the key.
 */
export type AuthFailure =
  | 'missing token'
  | 'invalid token'
  | 'algorithm not allowed'
  | 'token expired'
  | 'token not yet valid'
  | 'token issued in the future'
  | 'token has no exp'
  | 'token lifetime too long'
  | 'wrong issuer'
  | 'wrong audience'
  | 'invalid subject'
  | 'invalid user_id'
  | 'key set unavailable';

export type AuthResult = { principal: Principal } | { failure: AuthFailure };

/** JOSE algorithms by key family; used to refuse an allow-list the configured key could never verify. */
const FAMILY: Record<string, RegExp> = {
  secret: /^HS(256|384|512)$/,
  rsa: /^(RS|PS)(256|384|512)$/,
  'rsa-pss': /^PS(256|384|512)$/,
  ec: /^ES(256|384|512)$/,
  ed25519: /^EdDSA$/,
  ed448: /^EdDSA$/,
};

/**
 * Authenticates the WebSocket upgrade request (`?token=` JWT, or `?user_id=` in dev mode), and the
 * long-polling requests (`Authorization: Bearer <JWT>`, or `?user_id=` in dev mode).
 * Tokens: signature with an allowed algorithm (default: only the configured key's), `exp` required,
 * `nbf`/`iat` checked with a small clock tolerance, lifetime `exp - (iat ?? now)` bounded.
 */
@Injectable()
export class AuthService implements OnModuleInit {
  private readonly logger = new Logger(AuthService.name);
  private readonly refusals = new RateLimitedLog((line) => this.logger.warn(line));
  private key: Uint8Array | CryptoKey | KeyObject | JWTVerifyGetKey | undefined;
  private algorithms: string[] = [];

  constructor(
    private readonly config: Config,
    private readonly metrics: MetricsService,
  ) {}

  onModuleInit(): void {
    const a = this.config.auth;
    if (a.mode === 'dev') {
      this.logger.warn(
        'AUTH_MODE=dev: clients authenticate with ?user_id=<id> and no proof. Never use in production.',
      );
    }
    let family: string | undefined; // undefined: a key set, whose keys may be of any type
    let defaultAlg = 'RS256';
    if (a.jwtSecret) {
      this.key = new TextEncoder().encode(a.jwtSecret);
      family = 'secret';
      defaultAlg = 'HS256';
    } else if (a.jwtPublicKey) {
      const pem = a.jwtPublicKey.replace(/\\n/g, '\n');
      if (pem.trim().startsWith('{')) {
        this.key = createLocalJWKSet(JSON.parse(pem) as Parameters<typeof createLocalJWKSet>[0]);
      } else {
        const key = createPublicKey(pem);
        this.key = key;
        family = key.asymmetricKeyType;
        defaultAlg = algorithmOf(key);
      }
    } else if (a.jwksUrl) this.key = createRemoteJWKSet(new URL(a.jwksUrl));
    if (!this.key) return;

    this.algorithms = a.algorithms ?? [defaultAlg];
    const unusable = this.algorithms.filter(
      (alg) => alg.toLowerCase() === 'none' || (family !== undefined && !FAMILY[family]?.test(alg)),
    );
    if (unusable.length > 0) {
      throw new Error(
        `JWT_ALGORITHMS lists ${unusable.join(', ')}, which the configured ${family ?? 'key'} key cannot verify`,
      );
    }
    this.logger.log(`JWT algorithms allowed: ${this.algorithms.join(', ')}`);
  }

  async authenticate(req: IncomingMessage): Promise<AuthResult> {
    const result = await this.check(req);
    if ('failure' in result) {
      this.metrics.authFailures.inc({ reason: result.failure.replace(/ /g, '_') });
      this.refusals.note(result.failure, `refused an upgrade: ${result.failure}`);
    }
    return result;
  }

  private async check(req: IncomingMessage): Promise<AuthResult> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    // `Authorization: Bearer` for HTTP clients (long polling); browsers' WebSockets can only use the URL.
    const token = url.searchParams.get('token') ?? bearerOf(req);
    if (token && this.key) return this.verify(token);
    if (this.config.auth.mode === 'dev') {
      const userId = url.searchParams.get('user_id');
      // A slice of the URL until interned: it would keep the whole query string alive.
      if (userId && ID_PATTERN.test(userId))
        return { principal: { userId: intern(userId), expiresAt: null } };
      if (userId) return { failure: 'invalid user_id' };
    }
    return { failure: 'missing token' };
  }

  private async verify(token: string): Promise<AuthResult> {
    const { issuer, audience, clockToleranceSec, maxLifetimeSec } = this.config.auth;
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.key as Uint8Array, {
        issuer,
        audience,
        algorithms: this.algorithms,
        requiredClaims: ['exp'],
        clockTolerance: clockToleranceSec,
      }));
    } catch (err) {
      return { failure: failureOf(err) };
    }
    const now = Date.now() / 1000;
    const exp = payload.exp!; // required above, and jose checked it is a number
    if (typeof payload.iat === 'number' && payload.iat > now + clockToleranceSec) {
      return { failure: 'token issued in the future' };
    }
    if (exp - (payload.iat ?? now) > maxLifetimeSec) return { failure: 'token lifetime too long' };
    if (typeof payload.sub !== 'string' || !ID_PATTERN.test(payload.sub))
      return { failure: 'invalid subject' };
    return { principal: { userId: intern(payload.sub), expiresAt: exp * 1000 } };
  }
}

/** The token of an `Authorization: Bearer <token>` header, if any. */
function bearerOf(req: IncomingMessage): string | null {
  const header = req.headers?.authorization; // hand-built requests (tests) may have no headers
  const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return m ? m[1] : null;
}

/** The JOSE algorithm a PEM key is meant for (the default allow-list). */
function algorithmOf(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return 'ES256';
      if (curve === 'secp384r1') return 'ES384';
      if (curve === 'secp521r1') return 'ES512';
      throw new Error(`JWT_PUBLIC_KEY: unsupported EC curve ${curve ?? '?'}`);
    }
    case 'ed25519':
    case 'ed448':
      return 'EdDSA';
    default:
      throw new Error(`JWT_PUBLIC_KEY: unsupported key type ${key.asymmetricKeyType ?? '?'}`);
  }
}

function failureOf(err: unknown): AuthFailure {
  if (err instanceof errors.JWTExpired) return 'token expired';
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'exp':
        return err.reason === 'missing' ? 'token has no exp' : 'invalid token';
      case 'nbf':
        return 'token not yet valid';
      case 'iss':
        return 'wrong issuer';
      case 'aud':
        return 'wrong audience';
      default:
        return 'invalid token';
    }
  }
  if (err instanceof errors.JWKSTimeout) return 'key set unavailable';
  // Bad signature, malformed, no matching key, key/algorithm mismatch: one answer, details stay here.
  return 'invalid token';
}
