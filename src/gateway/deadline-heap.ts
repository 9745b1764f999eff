/** setTimeout's longest delay; a later deadline is reached by re-arming when the timer fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Many deadlines on one timer: a binary min-heap by time. Each connection's hello timeout and token
 * expiry are entries here instead of a Timeout and a closure of their own (~250 B per connection, kept
 * for the connection's whole life in the expiry's case); an entry costs a few array slots and an index
 * entry, and removal (hello arrived, socket closed) is O(log n), so nothing waits here after its item
 * is gone.
 *
 * `due(item)` runs once the deadline has passed (never early; late by the timer's granularity), unless
 * the item was removed first. A `due` that throws goes to `onError`; the others still run. The timer
 * is unref'd: pending deadlines alone do not keep the process alive.
 */
export class DeadlineHeap<T> {
  private readonly items: T[] = [];
  private readonly ats: number[] = [];
  private readonly dues: ((item: T) => void)[] = [];
  /** item -> its position in the arrays above. */
  private readonly index = new Map<T, number>();
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (Infinity: not armed). */
  private timerAt = Infinity;

  constructor(private readonly onError: (err: unknown, item: T) => void) {}

  get size(): number {
    return this.items.length;
  }

  /** `due(item)` at `at` (epoch ms); an item already here moves to the new deadline. */
  add(item: T, at: number, due: (item: T) => void): void {
    this.remove(item);
    const i = this.items.length;
    this.items.push(item);
    this.ats.push(at);
    this.dues.push(due);
    this.index.set(item, i);
    this.up(i);
    this.arm();
  }

  /** Forgets the item's deadline; false when it had none. */
  remove(item: T): boolean {
    const i = this.index.get(item);
    if (i === undefined) return false;
    this.index.delete(item);
    const last = this.items.length - 1;
    if (i !== last) this.place(last, i);
    this.items.pop();
    this.ats.pop();
    this.dues.pop();
    if (i < this.items.length) {
      this.down(i);
      this.up(i);
    }
    if (this.items.length === 0) this.disarm();
    return true;
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    while (this.items.length > 0 && this.ats[0] <= now) {
      const item = this.items[0];
      const due = this.dues[0];
      this.remove(item);
      try {
        due(item);
      } catch (err) {
        this.onError(err, item);
      }
    }
    this.arm();
  }

  /** Keeps one timer armed for the earliest deadline. */
  private arm(): void {
    if (this.items.length === 0) return;
    const now = Date.now();
    const next = Math.min(this.ats[0], now + MAX_TIMER_MS);
    if (this.timer !== undefined && this.timerAt <= next) return;
    this.disarm();
    this.timerAt = next;
    this.timer = setTimeout(() => this.fire(), Math.max(0, next - now));
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  /** Moves the entry at `from` to position `to` (overwriting it). */
  private place(from: number, to: number): void {
    this.items[to] = this.items[from];
    this.ats[to] = this.ats[from];
    this.dues[to] = this.dues[from];
    this.index.set(this.items[to], to);
  }

  private swap(a: number, b: number): void {
    const item = this.items[a];
    const at = this.ats[a];
    const due = this.dues[a];
    this.place(b, a);
    this.items[b] = item;
    this.ats[b] = at;
    this.dues[b] = due;
    this.index.set(item, b);
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.ats[parent] <= this.ats[i]) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.items.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let least = i;
      if (l < n && this.ats[l] < this.ats[least]) least = l;
      if (r < n && this.ats[r] < this.ats[least]) least = r;
      if (least === i) return;
      this.swap(i, least);
      i = least;
    }
  }
}
