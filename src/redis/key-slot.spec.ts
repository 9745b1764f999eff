import { keySlot } from './key-slot';
import { groupBySlot } from './redis.module';

describe('keySlot', () => {
  // Expected values: `redis-cli -p 27001 cluster keyslot <key>` on Redis 7.0.15.
  it.each([
    ['foo', 12182],
    ['bar', 5061],
    ['{user1000}.following', 3443],
    ['a{}b', 13694],
    ['x{}{y}', 14166],
    ['{}', 15257],
    ['relay:node:{gw-1}', 943],
    ['héllo', 11061],
  ])('%s -> %i, as Redis computes it', (key, slot) => {
    expect(keySlot(key)).toBe(slot);
  });

  it('a hash tag puts keys on one slot', () => {
    expect(keySlot('relay:sess:{ann}')).toBe(keySlot('relay:dedupe:{ann}:r1'));
    expect(keySlot('relay:pr:{p3}ann')).toBe(keySlot('relay:pdue:{p3}'));
  });
});

describe('groupBySlot', () => {
  const keys = ['a:{x}', 'b:{y}', 'c:{x}', 'd:{y}', 'e:{x}'];

  it('single Redis: order-preserving chunks, slots ignored', () => {
    expect(groupBySlot(false, keys, 2)).toEqual([[0, 1], [2, 3], [4]]);
  });

  it('cluster: every group on one slot, chunked, every item exactly once', () => {
    const groups = groupBySlot(true, keys, 2);
    for (const g of groups) {
      expect(g.length).toBeLessThanOrEqual(2);
      expect(new Set(g.map((i) => keySlot(keys[i]))).size).toBe(1);
    }
    expect(groups.flat().sort()).toEqual([0, 1, 2, 3, 4]);
  });
});
