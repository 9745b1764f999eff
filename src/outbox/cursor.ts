/**
 * Delivery cursors: `<epoch>-<seq>`, where seq is the recipient's gapless per-user sequence and
 * epoch names the outbox's storage generation (a wiped or replaced store gets a new epoch).
 * Clients treat the string as opaque; it also sorts correctly as a string within one epoch
 * because seq is zero-padded.
 */
export interface Cursor {
  epoch: string;
  seq: number;
}

const SEQ_WIDTH = 12;

export function encodeCursor(epoch: string, seq: number): string {
  return `${epoch}-${String(seq).padStart(SEQ_WIDTH, '0')}`;
}

export function decodeCursor(raw: string): Cursor | null {
  const dash = raw.lastIndexOf('-');
  if (dash <= 0) return null;
  const digits = raw.slice(dash + 1);
  if (!/^\d{1,15}$/.test(digits)) return null;
  return { epoch: raw.slice(0, dash), seq: Number(digits) };
}

export interface RetentionState {
  /** Highest seq ever committed for the user (0 if none). */
  head: number;
  /** Lowest seq greater than the cursor that is still retained (not expired), or null if none. */
  firstRetainedAfter: number | null;
}

export interface ResumePlan {
  recovered: boolean;
  /** Replay every retained delivery with seq > afterSeq; the client's cursor becomes this position. */
  afterSeq: number;
}

/**
 * Decides what a `hello` resumes from. `recovered` is false exactly when some delivery after the
 * client's cursor can no longer be given to it (expired, or the store was reset); the client then
 * gets every retained delivery and must reload state from its upstream source. `state` must be read
 * after the client's cursor when its epoch is current, and after 0 otherwise.
 *
 * When not recovered, `afterSeq` is moved to just before the first retained delivery, so the cursor
 * the client adopts from `welcome` stays valid on its next reconnect instead of reporting the same
 * loss again.
 */
export function planResume(cursor: Cursor | null, epoch: string, state: RetentionState): ResumePlan {
  const intactFrom = (state.firstRetainedAfter ?? state.head + 1) - 1;
  if (!cursor) return { recovered: true, afterSeq: 0 }; // fresh device: everything retained
  if (cursor.epoch !== epoch) return { recovered: false, afterSeq: intactFrom };
  if (cursor.seq > state.head) return { recovered: false, afterSeq: 0 }; // a cursor this store never issued
  if (cursor.seq === state.head || state.firstRetainedAfter === cursor.seq + 1) {
    return { recovered: true, afterSeq: cursor.seq };
  }
  return { recovered: false, afterSeq: intactFrom };
}
