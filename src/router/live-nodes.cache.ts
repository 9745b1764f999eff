/**
 * The router's view of the live gateway nodes (SessionMap.liveNodes: one read of the whole node
 * registry, a single key on one Redis master), kept for `ttlMs` instead of read on every batch.
 *
 * Why a stale view is safe: a node the cache still holds after it died only gets publishes nobody
 * reads, as it already did until its registry entry expired; a node the cache does not hold yet is
 * named by a session entry, and `nodesFor` then reads the registry at once (`refresh`), so a new
 * gateway's first user is not skipped. Concurrent callers share one read in flight.
 */
export class LiveNodesCache {
  private nodes: Set<string> | null = null;
  private readAt = 0;
  private inFlight: Promise<Set<string>> | null = null;
  /** Reads started, and the latest of them whose result is kept. */
  private started = 0;
  private kept = 0;

  constructor(
    private readonly read: () => Promise<Set<string>>,
    private readonly ttlMs = 1_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The cached set while it is fresh, else null (the caller reads it alongside its own lookups). */
  fresh(): Set<string> | null {
    return this.nodes && this.now() - this.readAt < this.ttlMs ? this.nodes : null;
  }

  /** The last set read, however old (null before the first read): for estimates, not for routing. */
  lastRead(): Set<string> | null {
    return this.nodes;
  }

  /** Reads the registry (one read shared by concurrent callers) and caches it. */
  refresh(): Promise<Set<string>> {
    this.inFlight ??= this.readAndKeep().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  /**
   * A read that starts now, never one already in flight (which may predate what the caller needs to
   * see, e.g. a node registered while the caller's outbox write committed); cached like `refresh`.
   */
  readNow(): Promise<Set<string>> {
    return this.readAndKeep();
  }

  /** One read; its result is kept unless a read started later has already been kept. */
  private async readAndKeep(): Promise<Set<string>> {
    const seq = ++this.started;
    const at = this.now();
    const nodes = await this.read();
    if (seq > this.kept) {
      this.kept = seq;
      this.nodes = nodes;
      this.readAt = at;
    }
    return nodes;
  }

  /** The live set, re-read when `named` holds a node the cached set does not (a gateway that just joined). */
  async nodesFor(cached: Set<string>, named: Iterable<string>): Promise<Set<string>> {
    for (const node of named) if (!cached.has(node)) return this.refresh();
    return cached;
  }
}
