import { monotonicFactory } from 'ulid';

const next = monotonicFactory();

/** Server message ids: ULIDs, unique and time-ordered (lexicographic order = creation order within a node). */
export function newMessageId(now: number = Date.now()): string {
  return next(now);
}

/**
 * The same string as one flat, internalized copy. A string sliced out of a longer one (a query
 * parameter out of the request URL, say) keeps that whole parent alive for as long as it is held;
 * ids held per connection (user ids) go through here so they cost their own length only, and every
 * connection of one user shares one copy. V8 internalizes property keys; its string table is weak,
 * so an id nobody holds any more is collected.
 */
export function intern(s: string): string {
  return Object.keys({ [s]: 0 })[0];
}
