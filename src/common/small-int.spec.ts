import { smallInt } from './small-int';

describe('smallInt', () => {
  it('keeps every value, integral or not, inside int32 range or beyond', () => {
    for (const n of [
      0,
      1,
      -1,
      126,
      2 ** 31 - 1,
      -(2 ** 31),
      2 ** 31,
      -(2 ** 31) - 1,
      1.5,
      -0.25,
      1e15,
      Date.now(),
    ])
      expect(smallInt(n)).toBe(n === 0 ? 0 : n);
    expect(smallInt(Date.now() - (Date.now() - 126))).toBe(126);
  });
});
