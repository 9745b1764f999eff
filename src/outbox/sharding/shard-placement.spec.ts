import { jumpHash, ShardPlacement } from './shard-placement';

describe('jumpHash (outbox shard placement)', () => {
  const ids = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);

  it('is stable: fixed answers for fixed ids (a change here would move users between shards)', () => {
    expect(['ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus', 'hal'].map((id) => jumpHash(id, 4))).toEqual([
      2, 2, 3, 2, 1, 1, 1, 3,
    ]);
    expect(jumpHash('anything', 1)).toBe(0);
    const placement = new ShardPlacement(4, 3); // a tiny cache: answers must not change as it cycles
    for (let round = 0; round < 2; round++) {
      for (const id of ids.slice(0, 50)) expect(placement.shardOf(id)).toBe(jumpHash(id, 4));
    }
  });

  it('spreads ids evenly', () => {
    for (const n of [2, 3, 5]) {
      const counts = new Array<number>(n).fill(0);
      for (const id of ids) counts[jumpHash(id, n)]++;
      for (const c of counts) expect(Math.abs(c - ids.length / n)).toBeLessThan(ids.length / n / 10);
    }
  });

  it('moves only 1/(N+1) of the ids when a shard is added, all of them to the new shard', () => {
    for (const n of [1, 2, 3]) {
      let moved = 0;
      for (const id of ids) {
        const before = jumpHash(id, n);
        const after = jumpHash(id, n + 1);
        if (before !== after) {
          moved++;
          expect(after).toBe(n);
        }
      }
      expect(Math.abs(moved - ids.length / (n + 1))).toBeLessThan(ids.length / (n + 1) / 10);
    }
  });

  it('refuses a shard count below 1', () => {
    expect(() => jumpHash('x', 0)).toThrow('shard count must be >= 1');
    expect(() => new ShardPlacement(1.5)).toThrow();
  });
});
