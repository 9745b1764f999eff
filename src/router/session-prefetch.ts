import { SessionEntry, SessionMap } from '../session/session-map';

/**
 * The recipients' session lookup, started while the outbox commits instead of after it.
 *
 * Invariant kept (no live delivery missed): a connection registers its session (`SessionMap.add`,
 * after which `additions` has moved) before it replays the outbox. The router reads `additions`
 * (a), looks the recipients up (b), waits for the commit (c), then reads `additions` again (d).
 * - (a) == (d): every connection registered before (d) was registered before (a), so (b) has it;
 *   one registered after (d) replays after the commit and finds the deliveries in the outbox.
 * - Otherwise, or when the early lookup failed, the lookup runs again after (c), which is what the
 *   router did before this existed.
 * Users the early lookup did not ask for (recipients of receipts, known only after the commit) are
 * looked up after (c).
 */
export class SessionPrefetch {
  private readonly early: Promise<{ before: number; found: Map<string, SessionEntry[]> } | null>;

  constructor(
    private readonly sessions: SessionMap,
    private readonly asked: ReadonlySet<string>,
  ) {
    this.early = (async () => {
      const before = await sessions.additions();
      return { before, found: await sessions.lookup([...asked]) };
    })().catch(() => null); // a failed prefetch only means the lookup runs after the commit
  }

  /** After the commit: the live sessions of `userIds`; `reused` when the early lookup still held. */
  async lookup(userIds: string[]): Promise<{ sessions: Map<string, SessionEntry[]>; reused: boolean }> {
    const early = await this.early;
    if (early && early.before >= 0 && (await this.sessions.additions()) === early.before) {
      const missing = userIds.filter((u) => !this.asked.has(u));
      if (missing.length > 0) for (const [u, e] of await this.sessions.lookup(missing)) early.found.set(u, e);
      return { sessions: early.found, reused: true };
    }
    return { sessions: await this.sessions.lookup(userIds), reused: false };
  }
}
