import { AckRecord, SendDedupe } from '../send-dedupe';

/** Insertion-ordered map: expired entries are always at the front, so eviction is O(expired). */
export class MemoryDedupeDriver extends SendDedupe {
  private readonly entries = new Map<string, { record: AckRecord; expiresAt: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
  }

  async reserve(userId: string, ref: string, candidate: AckRecord): Promise<AckRecord | null> {
    const now = this.now();
    for (const [key, e] of this.entries) {
      if (e.expiresAt > now) break;
      this.entries.delete(key);
    }
    const key = `${userId}\u0000${ref}`;
    const existing = this.entries.get(key);
    if (existing) return existing.record;
    this.entries.set(key, { record: candidate, expiresAt: now + this.windowMs });
    return null;
  }

  async release(userId: string, ref: string, candidate: AckRecord): Promise<void> {
    const key = `${userId}\u0000${ref}`;
    if (this.entries.get(key)?.record.id === candidate.id) this.entries.delete(key);
  }
}
