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

  it('eager: an idle batcher flushes at the end of the tick, with what the tick and its promise chains added', async () => {
    const calls: number[][] = [];
    const b = new Batcher<number>(
      async (items) => {
        calls.push(items);
      },
      500,
      true,
    );
    let callsWhenImmediateRan: number[][] | null = null;
    setImmediate(() => (callsWhenImmediateRan = calls.map((c) => [...c])));
    const done = [
      b.add(1),
      Promise.resolve().then(() => b.add(2)),
      Promise.resolve()
        .then(() => undefined)
        .then(() => b.add(3)),
    ];
    await Promise.all(done);
    await new Promise((r) => setImmediate(r));
    expect(callsWhenImmediateRan).toEqual([[1, 2, 3]]);
    expect(calls).toEqual([[1, 2, 3]]);
  });
});
