/** A member's markers in one conversation: conversation seqs delivered to / read by them. */
export interface Marker {
  conversationId: string;
  userId: string;
  delivered: number;
  read: number;
}

/** One marker move (a coalesced receipt). */
export interface MarkerMove {
  conversationId: string;
  userId: string;
  kind: 'delivered' | 'read';
  seq: number;
}

/**
 * Per (conversation, member) delivered/read markers (protocol v1.1 receipts); the router writes
 * them, `GET /v1/conversations/:id/receipts` reads them.
 *
 * Contract every driver keeps:
 * - Markers only move forward: `advance` keeps the maximum of the stored and the given seq, per kind,
 *   whatever the order of concurrent calls; reading implies delivery (delivered >= read after any move).
 * - A member without a marker reads as 0/0; `read` returns one Marker per asked pair.
 */
export abstract class MarkerStore {
  abstract read(pairs: { conversationId: string; userId: string }[]): Promise<Marker[]>;
  abstract advance(moves: MarkerMove[]): Promise<void>;
  /** The markers of a conversation's members that have any, at most `limit`, by user id. */
  abstract list(conversationId: string, limit: number): Promise<Marker[]>;
  abstract ping(): Promise<void>;
}

export function markerKey(conversationId: string, userId: string): string {
  return `${conversationId}\u0000${userId}`;
}
