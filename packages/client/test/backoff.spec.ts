import { Backoff } from '../src/backoff';

describe('Backoff', () => {
  it('doubles the ceiling from 100 ms and caps it at 30 s', () => {
    const b = new Backoff({ random: () => 0.5 });
    const delays = Array.from({ length: 12 }, () => b.next());
    // Half of 100, 200, 400, ... 25 600, then the 30 000 cap.
    expect(delays).toEqual([50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000, 15000]);
  });

  it('uses full jitter: delays span [0, ceiling)', () => {
    expect(new Backoff({ random: () => 0 }).next()).toBe(0);
    const high = new Backoff({ random: () => 0.999999 });
    expect([high.next(), high.next(), high.next()]).toEqual([99, 199, 399]);
  });

  it('stays within bounds with a real random source', () => {
    const b = new Backoff();
    for (let attempt = 0; attempt < 40; attempt++) {
      const ceiling = Math.min(30_000, 100 * 2 ** attempt);
      expect(b.ceiling()).toBe(ceiling);
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(ceiling);
      expect(Number.isInteger(d)).toBe(true);
    }
  });

  it('spreads a crowd: 1000 clients on their 5th attempt do not retry in step', () => {
    const delays = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const b = new Backoff();
      for (let a = 0; a < 4; a++) b.next();
      delays.add(b.next());
    }
    // Ceiling 1600 ms: a synchronized storm would produce a handful of distinct values.
    expect(delays.size).toBeGreaterThan(500);
  });

  it('does not overflow after very many attempts', () => {
    const b = new Backoff({ random: () => 0.5 });
    for (let i = 0; i < 5000; i++) b.next();
    expect(b.next()).toBe(15000);
  });

  it('reset() starts again from the base', () => {
    const b = new Backoff({ random: () => 0.5 });
    b.next();
    b.next();
    b.next();
    expect(b.attempts).toBe(3);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(50);
  });

  it('honours custom base and cap', () => {
    const b = new Backoff({ baseMs: 1000, capMs: 5000, random: () => 0.5 });
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([500, 1000, 2000, 2500]);
  });

  it('with equal jitter, delays span [ceiling/2, ceiling)', () => {
    const low = new Backoff({ baseMs: 200, capMs: 5000, jitter: 'equal', random: () => 0 });
    expect(Array.from({ length: 7 }, () => low.next())).toEqual([100, 200, 400, 800, 1600, 2500, 2500]);
    const high = new Backoff({ baseMs: 200, capMs: 5000, jitter: 'equal', random: () => 0.999999 });
    expect([high.next(), high.next()]).toEqual([199, 399]);
  });

  it('rejects nonsensical settings', () => {
    expect(() => new Backoff({ baseMs: 0 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: 500, capMs: 100 })).toThrow(RangeError);
  });
});
