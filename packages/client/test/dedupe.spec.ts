import { BoundedSet, Deduper } from '../src/dedupe';

describe('BoundedSet', () => {
  it('forgets the oldest key beyond its capacity', () => {
    const s = new BoundedSet(3);
    ['a', 'b', 'c', 'd'].forEach((k) => s.add(k));
    expect(s.has('a')).toBe(false);
    expect(['b', 'c', 'd'].every((k) => s.has(k))).toBe(true);
    expect(s.size).toBe(3);
  });

  it('does not count a re-added key twice', () => {
    const s = new BoundedSet(2);
    s.add('a');
    s.add('a');
    s.add('b');
    expect(s.has('a')).toBe(true);
    expect(s.size).toBe(2);
  });

  it('never grows past its capacity', () => {
    const s = new BoundedSet(100);
    for (let i = 0; i < 10_000; i++) s.add(String(i));
    expect(s.size).toBe(100);
    expect(s.has('9999')).toBe(true);
    expect(s.has('9899')).toBe(false);
  });

  it('clear() empties it and it fills up normally again', () => {
    const s = new BoundedSet(2);
    ['a', 'b'].forEach((k) => s.add(k));
    s.clear();
    expect(s.size).toBe(0);
    expect(s.has('a')).toBe(false);
    ['c', 'd', 'e'].forEach((k) => s.add(k));
    expect(s.size).toBe(2);
    expect([s.has('c'), s.has('d'), s.has('e')]).toEqual([false, true, true]);
  });
});

describe('Deduper', () => {
  it('delivers new messages once and skips a replayed cursor', () => {
    const d = new Deduper();
    expect(d.check('e-1', 'm1', undefined)).toBe('deliver');
    expect(d.check('e-2', 'm2', 'e-1')).toBe('deliver');
    expect(d.check('e-1', 'm1', 'e-2')).toBe('skip');
    expect(d.check('e-2', 'm2', 'e-2')).toBe('skip');
  });

  it('skips the last delivered cursor even when it only came from storage', () => {
    expect(new Deduper().check('e-7', 'm7', 'e-7')).toBe('skip');
  });

  it('advances past the same message id under a new cursor without delivering it again', () => {
    const d = new Deduper();
    expect(d.check('e-1', 'm1', undefined)).toBe('deliver');
    expect(d.check('e-2', 'm1', 'e-1')).toBe('advance');
    expect(d.check('e-2', 'm1', 'e-2')).toBe('skip');
  });

  it('treats cursors as opaque strings (no parsing, no ordering)', () => {
    const d = new Deduper();
    expect(d.check('zzz', 'm1', undefined)).toBe('deliver');
    expect(d.check('aaa', 'm2', 'zzz')).toBe('deliver');
  });

  it('forgetCursors() keeps the message ids: a new message under a known cursor string is delivered', () => {
    const d = new Deduper();
    d.check('e-1', 'm1', undefined);
    d.check('e-2', 'm2', 'e-1');
    d.forgetCursors();
    expect(d.check('e-1', 'n1', 'e-0')).toBe('deliver');
    expect(d.check('e-2', 'm2', 'e-1')).toBe('advance');
    expect(d.check('e-2', 'm2', 'e-2')).toBe('skip');
    expect(d.check('e-1', 'n1', 'e-2')).toBe('skip');
  });

  it('has bounded memory: duplicates older than the window are no longer recognised', () => {
    const d = new Deduper(2);
    d.check('c1', 'm1', undefined);
    d.check('c2', 'm2', 'c1');
    d.check('c3', 'm3', 'c2');
    expect(d.check('c1', 'm1', 'c3')).toBe('deliver');
  });
});
