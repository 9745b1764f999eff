import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { signatureHeader, verifySignature } from './webhook-signature';

describe('webhook signatures (HMAC-SHA256 over "<t>.<body>")', () => {
  const body = '{"events":[{"id":"1"}]}';
  const now = 1_764_590_400;

  it('verifies what it signs, with any of several secrets (rotation)', () => {
    const header = signatureHeader(['old-secret', 'new-secret'], now, body);
    expect(header).toMatch(/^t=1764590400,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
    expect(verifySignature('old-secret', header, body, 300, now)).toBe(true);
    expect(verifySignature('new-secret', header, body, 300, now + 299)).toBe(true);
  });

  it('refuses another secret, a changed body, an old or future timestamp, a missing header', () => {
    const header = signatureHeader(['s'], now, body);
    expect(verifySignature('t', header, body, 300, now)).toBe(false);
    expect(verifySignature('s', header, body.replace('1', '2'), 300, now)).toBe(false);
    expect(verifySignature('s', header, body, 300, now + 301)).toBe(false);
    expect(verifySignature('s', header, body, 300, now - 301)).toBe(false);
    expect(verifySignature('s', header.replace(/t=\d+/, `t=${now + 1}`), body, 300, now)).toBe(false);
    expect(verifySignature('s', undefined, body, 300, now)).toBe(false);
    expect(verifySignature('s', 'garbage', body, 300, now)).toBe(false);
  });
});

describe("README's verification snippet", () => {
  it('accepts what relay signs and refuses a tampered body', () => {
    const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
    const code = /```js\n(const \{ createHmac[\s\S]*?function verifyRelaySignature[\s\S]*?)```/.exec(
      readme,
    )?.[1];
    expect(code).toBeDefined();
    const verify = new Function('require', `${code}; return verifyRelaySignature;`)(require) as (
      secret: string,
      header: string,
      body: string,
    ) => boolean;
    const body = '{"events":[]}';
    const header = signatureHeader(['k1', 'k2'], Math.floor(Date.now() / 1000), body);
    expect(verify('k2', header, body)).toBe(true);
    expect(verify('k2', header, body + ' ')).toBe(false);
    expect(verify('k3', header, body)).toBe(false);
  });
});
