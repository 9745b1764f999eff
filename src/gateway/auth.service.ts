import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type CryptoKey,
  importSPKI,
  JWTVerifyGetKey,
  jwtVerify,
  type KeyObject,
} from 'jose';
import { IncomingMessage } from 'node:http';
import { Config } from '../config/config.module';

export interface Principal {
  userId: string;
  /** Token expiry in ms since epoch; the connection is closed with 4001 when it passes. */
  expiresAt: number | null;
}

const USER_ID = /^[\w.:@-]{1,128}$/;

/** Authenticates the WebSocket upgrade request (`?token=` JWT, or `?user_id=` in dev mode). */
@Injectable()
export class AuthService implements OnModuleInit {
  private readonly logger = new Logger(AuthService.name);
  private key: Uint8Array | CryptoKey | KeyObject | JWTVerifyGetKey | undefined;

  constructor(private readonly config: Config) {}

  async onModuleInit(): Promise<void> {
    const a = this.config.auth;
    if (a.mode === 'dev') {
      this.logger.warn(
        'AUTH_MODE=dev: clients authenticate with ?user_id=<id> and no proof. Never use in production.',
      );
    }
    if (a.jwtSecret) this.key = new TextEncoder().encode(a.jwtSecret);
    else if (a.jwtPublicKey) {
      const pem = a.jwtPublicKey.replace(/\\n/g, '\n');
      this.key = pem.trim().startsWith('{')
        ? createLocalJWKSet(JSON.parse(pem) as Parameters<typeof createLocalJWKSet>[0])
        : await importSPKI(pem, pem.includes('EC') ? 'ES256' : 'RS256');
    } else if (a.jwksUrl) this.key = createRemoteJWKSet(new URL(a.jwksUrl));
  }

  async authenticate(req: IncomingMessage): Promise<Principal | null> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const token = url.searchParams.get('token');
    if (token && this.key) return this.verify(token);
    if (this.config.auth.mode === 'dev') {
      const userId = url.searchParams.get('user_id');
      if (userId && USER_ID.test(userId)) return { userId, expiresAt: null };
    }
    return null;
  }

  private async verify(token: string): Promise<Principal | null> {
    try {
      const { payload } = await jwtVerify(token, this.key as Uint8Array, {
        issuer: this.config.auth.issuer,
        audience: this.config.auth.audience,
      });
      if (typeof payload.sub !== 'string' || !USER_ID.test(payload.sub)) return null;
      return { userId: payload.sub, expiresAt: payload.exp ? payload.exp * 1000 : null };
    } catch {
      return null; // expired, forged or malformed: the reason stays server-side
    }
  }
}
