/** A token bucket: `burst` tokens, refilled at `perSec`. */
export class TokenBucket {
  private tokens: number;

  constructor(
    private readonly perSec: number,
    private readonly burst: number,
    /** When the bucket starts full (a lazily created one passes the time of its first take). */
    private at = Date.now(),
  ) {
    this.tokens = burst;
  }

  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSec);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
