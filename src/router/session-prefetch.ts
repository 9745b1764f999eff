import { registrationBucket, SessionEntry, SessionMap } from '../session/session-map';

/**
 * The recipients' session lookup, started while the outbox commits instead of after it.
 *
 * Invariant kept (no live delivery missed): a connection registers its session (`SessionMap.add`,
 * after which its user's registration bucket has moved) before it replays the outbox. The router
 * reads the buckets of the recipients (a), looks them up (b), waits for the commit (c), then reads
 * the same buckets again (d).
 * - A user whose bucket did not move between (a) and (d): every connection of theirs registered
 *   before (d) was registered before (a), so (b) has it; one registered after (d) replays after the
 *   commit and finds the deliveries in the outbox.
 * - A user whose bucket moved is looked up again after (c), which is what the router did before this
 *   existed; so is everyone when the early lookup failed. Buckets keep a registration elsewhere from
 *   costing the whole batch a second lookup: only the users sharing its bucket are looked up again.
 * Users the early lookup did not ask for (recipients of receipts, known only after the commit) are
 * looked up after (c).
 */
export class SessionPrefetch {
  private readonly early: Promise<{
    buckets: number[];
    before: number[];
    found: Map<string, SessionEntry[]>;
  } | null>;

  constructor(
    private readonly sessions: SessionMap,
    private readonly asked: ReadonlySet<string>,
  ) {
    this.early = (async () => {
      const buckets = [...new Set([...asked].map(registrationBucket))];
      const before = await sessions.registrations(buckets);
      return { buckets, before, found: await sessions.lookup([...asked]) };
    })().catch(() => null); // a failed prefetch only means the lookup runs after the commit
  }

  /**
   * After the commit: the live sessions of `userIds`; `again`: how many of them had to be looked up
   * after the commit (all of them when the early lookup failed).
   */
  async lookup(userIds: string[]): Promise<{ sessions: Map<string, SessionEntry[]>; again: number }> {
    const early = await this.early;
    if (!early) return { sessions: await this.sessions.lookup(userIds), again: userIds.length };
    const after = await this.sessions.registrations(early.buckets);
    const moved = new Set(early.buckets.filter((b, i) => after[i] !== early.before[i]));
    const again = userIds.filter((u) => !this.asked.has(u) || moved.has(registrationBucket(u)));
    if (again.length > 0) {
      const fresh = await this.sessions.lookup(again);
      for (const u of again) {
        const entries = fresh.get(u);
        if (entries) early.found.set(u, entries);
        else early.found.delete(u);
      }
    }
    return { sessions: early.found, again: again.length };
  }
}
