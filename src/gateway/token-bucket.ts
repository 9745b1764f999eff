import { smallInt } from '../common/small-int';
import { fromCompactTime, toCompactTime } from './compact-time';

/** A token bucket: `burst` tokens, refilled at `perSec`. */
export class TokenBucket {
  private tokens: number;
  /** The last take, as a compact time (compact-time.ts): one per connection, kept small. */
  private at: number;

  constructor(
    private readonly perSec: number,
    private readonly burst: number,
    /** When the bucket starts full (a lazily created one passes the time of its first take). */
    at = Date.now(),
  ) {
    this.tokens = burst;
    this.at = toCompactTime(at);
  }

  take(now: number): boolean {
    this.tokens = refill(this.tokens, fromCompactTime(this.at), now, this.perSec, this.burst);
    this.at = toCompactTime(now);
    if (this.tokens < 1) return false;
    this.tokens = smallInt(this.tokens - 1);
    return true;
  }
}

/**
 * The tokens a bucket holding `tokens` at `at` holds at `now` (refilled at `perSec`, at most `burst`):
 * TokenBucket's rule, for an owner that keeps the two numbers in its own fields (Connection's frame
 * budget: one bucket object less per connection).
 */
export function refill(tokens: number, at: number, now: number, perSec: number, burst: number): number {
  return Math.min(burst, tokens + ((now - at) / 1000) * perSec);
}
