/**
 * Coalesces concurrent single-item calls into batched calls.
 *
 * Invariants:
 * - At most one flush is in flight at a time; items that arrive meanwhile wait for the next one.
 *   With Kafka this both amortises round trips and keeps the producer's send order (= ack order).
 * - Items are flushed in arrival order; each caller's promise settles exactly once, with the
 *   outcome of the flush that carried its item (a failed flush rejects every item in it).
 * - A flush starts on the next macrotask after the first item, so items produced in the same
 *   tick (one WebSocket read can carry many frames) share a batch without a timer. With `eager`, the
 *   first item after an idle period flushes at the end of the current tick instead (process.nextTick:
 *   after the microtasks, so whatever the same callback and its promise chains add still joins), which
 *   saves an event-loop turn at low load; items that queued while a flush was in flight still wait for
 *   the next macrotask, as they would without it.
 */
export class Batcher<T, R = void> {
  private queue: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private inFlight = false;
  private scheduled = false;

  constructor(
    private readonly flushFn: (items: T[]) => Promise<R[] | void>,
    private readonly maxBatch = 500,
    private readonly eager = false,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule(this.eager);
    });
  }

  get pending(): number {
    return this.queue.length;
  }

  private schedule(now = false): void {
    if (this.inFlight || this.scheduled) return;
    this.scheduled = true;
    (now ? process.nextTick : setImmediate)(this.scheduledFlush);
  }

  private readonly scheduledFlush = (): void => {
    this.scheduled = false;
    void this.flush();
  };

  private async flush(): Promise<void> {
    if (this.inFlight || this.queue.length === 0) return;
    this.inFlight = true;
    const batch = this.queue.splice(0, this.maxBatch);
    try {
      const results = await this.flushFn(batch.map((b) => b.item));
      batch.forEach((b, i) => b.resolve((results ? results[i] : undefined) as R));
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.inFlight = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}
