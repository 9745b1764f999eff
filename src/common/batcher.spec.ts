import { Batcher } from './batcher';

describe('Batcher', () => {
  it('coalesces concurrent items, keeps order, and never runs two flushes at once', async () => {
    const calls: number[][] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const b = new Batcher<number, number>(async (items) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      calls.push(items);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      return items.map((x) => x * 2);
    }, 100);
    const results = await Promise.all(Array.from({ length: 250 }, (_, i) => b.add(i)));
    expect(results).toEqual(Array.from({ length: 250 }, (_, i) => i * 2));
    expect(calls.flat()).toEqual(Array.from({ length: 250 }, (_, i) => i));
    expect(calls.length).toBeLessThanOrEqual(4);
    expect(Math.max(...calls.map((c) => c.length))).toBeLessThanOrEqual(100);
    expect(maxInFlight).toBe(1);
  });

  it('rejects every item of a failed flush and recovers for the next', async () => {
    let fail = true;
    const b = new Batcher<string>(async () => {
      if (fail) throw new Error('broker down');
    });
    const first = [b.add('a'), b.add('b')];
    await expect(Promise.all(first)).rejects.toThrow('broker down');
    await expect(first[1]).rejects.toThrow('broker down');
    fail = false;
    await expect(b.add('c')).resolves.toBeUndefined();
  });
});
