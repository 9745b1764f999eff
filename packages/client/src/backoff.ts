export interface BackoffOptions {
  /** First ceiling, in ms. Default 100. */
  baseMs?: number;
  /** Largest ceiling, in ms. Default 30 000. */
  capMs?: number;
  /** Uniform random in [0, 1). Injectable so tests can pin the jitter. Default Math.random. */
  random?: () => number;
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
  private attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 100;
    this.capMs = options.capMs ?? 30_000;
    this.random = options.random ?? Math.random;
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

  /** Returns the next delay in ms (an integer in [0, ceiling)) and advances the attempt counter. */
  next(): number {
    const delay = Math.floor(this.random() * this.ceiling());
    this.attempt++;
    return delay;
  }

  /** Called once a connection proved healthy, so the next failure starts again from baseMs. */
  reset(): void {
    this.attempt = 0;
  }
}
