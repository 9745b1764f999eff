export interface BackoffOptions {
  /** First ceiling, in ms. Default 100. */
  baseMs?: number;
  /** Largest ceiling, in ms. Default 30 000. */
  capMs?: number;
  /** Uniform random in [0, 1). Injectable so tests can pin the jitter. Default Math.random. */
  random?: () => number;
  /**
   * `full` (default): delay = random(0, ceiling). `equal`: delay = ceiling/2 + random(0, ceiling/2),
   * for waits that must not be near zero (e.g. after the server said `rate_limited`).
   */
  jitter?: 'full' | 'equal';
}

/**
 * Exponential back-off with "full jitter": delay = random(0, min(cap, base * 2^attempt)).
 *
 * Full jitter (rather than base * 2^n ± a little) matters when a node dies: all its clients see
 * the close at the same instant, and spreading each retry over the whole window keeps them from
 * arriving as one synchronized wave at the surviving nodes.
 */
export class Backoff {
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly random: () => number;
  private readonly jitter: 'full' | 'equal';
  private attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 100;
    this.capMs = options.capMs ?? 30_000;
    this.random = options.random ?? Math.random;
    this.jitter = options.jitter ?? 'full';
    if (!(this.baseMs > 0) || !(this.capMs >= this.baseMs)) {
      throw new RangeError('backoff: need 0 < baseMs <= capMs');
    }
  }

  /** Number of delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The upper bound of the next delay. */
  ceiling(): number {
    // min() before the power would overflow to Infinity after ~1000 attempts; the cap check keeps it finite.
    const exp = this.baseMs * 2 ** Math.min(this.attempt, 52);
    return Math.min(this.capMs, exp);
  }

  /**
   * Returns the next delay in ms (an integer in [0, ceiling), or [ceiling/2, ceiling) with equal
   * jitter) and advances the attempt counter.
   */
  next(): number {
    const ceiling = this.ceiling();
    const delay =
      this.jitter === 'equal'
        ? Math.floor(ceiling / 2 + (this.random() * ceiling) / 2)
        : Math.floor(this.random() * ceiling);
    this.attempt++;
    return delay;
  }

  /** Called once a connection proved healthy, so the next failure starts again from baseMs. */
  reset(): void {
    this.attempt = 0;
  }
}
