/** Sends numbered in (after, through] are refused after a failure (see IngressLane). */
export interface RefusalRange {
  readonly after: number;
  readonly through: number;
}

/**
 * One connection's ingress order: the chain its publishes are issued on, the publishes in flight, and
 * the sends refused after a failure. IngressService drives it (docs/protocol.md "Acks and retries").
 *
 * Invariants:
 * - Publishes are issued in frame order: each send's publish stage is chained (`enqueue`) after the
 *   previous send's, and runs once its own checks are done, so a client's messages enter the bus, and
 *   are acked, in the order it sent them. A stage catches its own exceptions: a rejected chain would
 *   silently drop every later send of the connection.
 * - Sends are numbered on arrival (`receive`). When send n is answered `unavailable` because a
 *   dependency failed (its checks: `checkFailed`; the bus: `publishFailed`), every send with a higher
 *   number received up to that moment is refused `unavailable` at its publish stage (`refuses`); sends
 *   received afterwards are processed normally. So the client's in-order retries cannot be overtaken
 *   by a message it sent after the failed one.
 * - Only real failures open such a range, refusals by this rule do not: a client that keeps sending is
 *   not refused forever.
 * - Special case of the bus: publishes already issued when one fails may still fail (Kafka fails the
 *   ones queued behind it), so after a publish failure later sends are also refused until the
 *   publishes in flight have settled.
 */
export class IngressLane {
  private tail: Promise<void> = Promise.resolve();
  private received = 0;
  private inFlight = 0;
  private failedPublishInFlight = false;
  private ranges: RefusalRange[] = [];

  /** Numbers a `send` frame on arrival. */
  receive(): number {
    return ++this.received;
  }

  /** Runs `stage` after the publish stage of every send received before it. `stage` must not reject. */
  enqueue(stage: () => Promise<void>): void {
    this.tail = this.tail.then(stage);
  }

  /**
   * Send n's publish stage: true when it must be refused. Stages visit sends in increasing n, so
   * ranges that end below n can never match again and are dropped. A send that passes is published
   * after everything issued before the failure has settled, so the failure is behind it.
   */
  refuses(n: number): boolean {
    if (this.inRefusedRange(n) || (this.failedPublishInFlight && this.inFlight > 0)) return true;
    this.failedPublishInFlight = false;
    return false;
  }

  /** A publish was issued: counted in flight until it settles. */
  publishing<T>(publish: Promise<T>): Promise<T> {
    this.inFlight++;
    return publish.finally(() => this.inFlight--);
  }

  /** Send n's checks failed (directory or dedupe store): the sends already received after it are refused. */
  checkFailed(n: number): void {
    this.refuseReceivedAfter(n);
  }

  /** Send n's publish failed: as `checkFailed`, and later sends wait out the publishes still in flight. */
  publishFailed(n: number): void {
    this.failedPublishInFlight = true;
    this.refuseReceivedAfter(n);
  }

  /** The ranges still open (read-only; for diagnostics and tests). */
  get refusals(): readonly RefusalRange[] {
    return this.ranges;
  }

  /** The connection closed: nothing is left to refuse. */
  clear(): void {
    this.ranges = [];
  }

  private refuseReceivedAfter(n: number): void {
    if (this.received > n) this.ranges.push({ after: n, through: this.received });
  }

  private inRefusedRange(n: number): boolean {
    const ranges = this.ranges;
    if (ranges.length === 0) return false;
    let refused = false;
    let kept = 0;
    for (const r of ranges) {
      if (r.through < n) continue;
      ranges[kept++] = r;
      if (r.after < n) refused = true;
    }
    ranges.length = kept;
    return refused;
  }
}
