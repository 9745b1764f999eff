import { DeadlineHeap } from './deadline-heap';

describe('DeadlineHeap', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('runs each due at its deadline, in deadline order, on one timer', () => {
    const fired: string[] = [];
    const heap = new DeadlineHeap<string>(() => undefined);
    const due = (item: string) => fired.push(item);
    const now = Date.now();
    for (const [item, at] of [
      ['c', 300],
      ['a', 100],
      ['d', 400],
      ['b', 200],
    ] as const)
      heap.add(item, now + at, due);
    expect(jest.getTimerCount()).toBe(1);
    jest.advanceTimersByTime(99);
    expect(fired).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(fired).toEqual(['a']);
    jest.advanceTimersByTime(300);
    expect(fired).toEqual(['a', 'b', 'c', 'd']);
    expect(heap.size).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('a removed item never fires; removing the last one stops the timer; re-adding moves the deadline', () => {
    const fired: number[] = [];
    const heap = new DeadlineHeap<number>(() => undefined);
    const due = (item: number) => fired.push(item);
    const now = Date.now();
    for (let i = 0; i < 50; i++) heap.add(i, now + 1000 + ((i * 37) % 50), due);
    for (let i = 0; i < 50; i += 2) expect(heap.remove(i)).toBe(true);
    expect(heap.remove(0)).toBe(false);
    heap.add(1, now + 5000, due); // moved later
    jest.advanceTimersByTime(1100);
    const odd = Array.from({ length: 25 }, (_, k) => 2 * k + 1).filter((i) => i !== 1);
    expect([...fired].sort((a, b) => a - b)).toEqual(odd);
    // order: by deadline
    const at = (i: number) => (i * 37) % 50;
    expect(fired).toEqual([...odd].sort((a, b) => at(a) - at(b)));
    heap.remove(1);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('an earlier deadline added later re-arms the timer; a far one waits beyond setTimeout range', () => {
    const fired: string[] = [];
    const heap = new DeadlineHeap<string>(() => undefined);
    const due = (item: string) => fired.push(item);
    const max = 2 ** 31 - 1;
    heap.add('far', Date.now() + max + 60_000, due);
    heap.add('soon', Date.now() + 10, due);
    jest.advanceTimersByTime(10);
    expect(fired).toEqual(['soon']);
    jest.advanceTimersByTime(max);
    expect(fired).toEqual(['soon']);
    jest.advanceTimersByTime(60_000);
    expect(fired).toEqual(['soon', 'far']);
  });

  it('a due that throws is reported and the others still run', () => {
    const errors: string[] = [];
    const fired: string[] = [];
    const heap = new DeadlineHeap<string>((err, item) => errors.push(`${item}: ${(err as Error).message}`));
    heap.add('bad', Date.now() + 5, () => {
      throw new Error('boom');
    });
    heap.add('good', Date.now() + 5, (item) => fired.push(item));
    jest.advanceTimersByTime(5);
    expect(errors).toEqual(['bad: boom']);
    expect(fired).toEqual(['good']);
  });
});
