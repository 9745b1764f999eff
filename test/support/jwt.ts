import { SignJWT } from 'jose';

/** An HS256 token for `sub`, as a client of a relay with `AUTH_MODE=jwt` and this `JWT_SECRET` sends. */
export function signHs256(secret: string, sub: string, expiresIn: string | number = '1h'): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));
}
