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
    this.tokens = Math.min(this.burst, this.tokens + ((now - fromCompactTime(this.at)) / 1000) * this.perSec);
    this.at = toCompactTime(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
