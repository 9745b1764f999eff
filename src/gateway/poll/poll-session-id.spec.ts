import { createHmac } from 'node:crypto';
import { PollSessionIds } from './poll-session-id';

describe('PollSessionIds', () => {
  it('any holder of the key accepts an id and reads its user; another key does not', () => {
    const a = new PollSessionIds('k'.repeat(32), undefined);
    const b = new PollSessionIds('k'.repeat(32), undefined);
    const { sid, claims } = a.issue('ann', 1234);
    expect(b.verify(sid)).toEqual({ key: claims.key, userId: 'ann', issuedAt: 1234 });
    expect(new PollSessionIds('x'.repeat(32), undefined).verify(sid)).toBeNull();
  });

  it('derives the key from JWT_SECRET when no POLL_SESSION_SECRET is set', () => {
    const { sid } = new PollSessionIds(null, 'jwt-secret').issue('ann');
    expect(new PollSessionIds(null, 'jwt-secret').verify(sid)?.userId).toBe('ann');
    expect(new PollSessionIds(null, 'other').verify(sid)).toBeNull();
  });

  it('refuses tampered, malformed and oversized ids', () => {
    const ids = new PollSessionIds('k'.repeat(32), undefined);
    const { sid } = ids.issue('ann');
    const [body, sig] = sid.split('.');
    const forged = Buffer.from(JSON.stringify({ k: 'A'.repeat(16), u: 'bob', t: 1 })).toString('base64url');
    for (const bad of [
      `${forged}.${sig}`,
      `${body}.${sig.slice(1)}`,
      body,
      '',
      '.',
      'a.b',
      `${sid}x`,
      'x'.repeat(600),
    ]) {
      expect(ids.verify(bad)).toBeNull();
    }
    // A well-signed body with invalid fields is refused too.
    const odd = new PollSessionIds('k'.repeat(32), undefined);
    const sign = (raw: object) => {
      const b = Buffer.from(JSON.stringify(raw)).toString('base64url');
      return `${b}.${createHmac('sha256', Buffer.from('k'.repeat(32)))
        .update(b)
        .digest('base64url')}`;
    };
    expect(odd.verify(sign({ k: 'A'.repeat(16), u: 'bad user', t: 1 }))).toBeNull();
    expect(odd.verify(sign({ k: 'short', u: 'ann', t: 1 }))).toBeNull();
    expect(odd.verify(sign({ k: 'A'.repeat(16), u: 'ann', t: 1 }))?.userId).toBe('ann');
  });
});
