/** The server's answer to a client ref: reused verbatim when the same sender resends the same ref. */
export interface AckRecord {
  id: string;
  ts: number;
  conversation_id: string;
}

/**
 * Remembers (sender, client ref) -> message for the dedupe window.
 *
 * `reserve` is atomic: the first caller for a key stores its candidate and gets null; any later caller
 * (another connection, another node) gets the stored record and must reuse its id and ts. Reuse is safe
 * even before the first publish finished, because routers are idempotent per (recipient, message id).
 */
export abstract class SendDedupe {
  abstract reserve(userId: string, ref: string, candidate: AckRecord): Promise<AckRecord | null>;

  /**
   * Undoes a `reserve` that stored `candidate` (it returned null) when the submission was then refused:
   * the ref stays free for the client's next use. A no-op when the key holds another record.
   */
  abstract release(userId: string, ref: string, candidate: AckRecord): Promise<void>;
}
