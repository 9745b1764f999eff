/**
 * At most one log line per key per interval, with how many occurrences it stands for: a flood of
 * refused upgrades must not turn into a flood of log lines (a cheap way to fill a disk).
 * The map holds one entry per distinct key; callers use a small fixed set of keys (reasons).
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly write: (line: string) => void,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Logs `line` now if `key` was not logged within the interval, else counts it for the next line. */
  note(key: string, line: string): void {
    const t = this.now();
    const seen = this.last.get(key);
    if (seen && t - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    const more = seen && seen.suppressed > 0 ? ` (+${seen.suppressed} more since the last line)` : '';
    this.last.set(key, { at: t, suppressed: 0 });
    this.write(line + more);
  }
}
