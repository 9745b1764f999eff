import { isReceiptEntry, OutboxEntry } from '../protocol/outbox-entry';

/** Most unconfirmed messages remembered per connection; older ones are forgotten (see below). */
const MAX_TRACKED = 1024;

/**
 * v1.1 delivered receipts: which messages a connection wrote and the client has not confirmed yet.
 * A `confirm` of delivery cursor N covers every delivery with seq <= N; this turns that into, per
 * conversation, the highest conversation seq covered.
 *
 * Invariants: notes arrive in increasing delivery seq (Connection writes in that order), so the
 * covered ones are a prefix. At most MAX_TRACKED are kept: dropping the oldest loses nothing that
 * matters, because markers are cumulative and a later message of the same conversation covers it
 * (a conversation whose only unconfirmed messages were dropped gets its marker with its next one).
 * Receipts and the member's own messages are not tracked: nobody needs a delivered marker for them.
 */
export class DeliveredTracker {
  private seqs: number[] = [];
  private conversations: string[] = [];
  private convSeqs: number[] = [];
  private head = 0;

  wrote(seq: number, entry: OutboxEntry, self: string): void {
    if (isReceiptEntry(entry) || entry.from === self || entry.seq === undefined) return;
    if (this.seqs.length - this.head >= MAX_TRACKED) this.head++;
    this.seqs.push(seq);
    this.conversations.push(entry.conversation_id);
    this.convSeqs.push(entry.seq);
    if (this.head > MAX_TRACKED) this.compact();
  }

  /** Conversation -> highest conversation seq covered by a confirm of delivery seq `uptoSeq`; forgets those. */
  confirmed(uptoSeq: number): Map<string, number> {
    const out = new Map<string, number>();
    for (; this.head < this.seqs.length && this.seqs[this.head] <= uptoSeq; this.head++) {
      const c = this.conversations[this.head];
      out.set(c, Math.max(out.get(c) ?? 0, this.convSeqs[this.head]));
    }
    this.compact();
    return out;
  }

  private compact(): void {
    if (this.head === 0) return;
    this.seqs = this.seqs.slice(this.head);
    this.conversations = this.conversations.slice(this.head);
    this.convSeqs = this.convSeqs.slice(this.head);
    this.head = 0;
  }
}
