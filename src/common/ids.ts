import { monotonicFactory } from 'ulid';

const next = monotonicFactory();

/** Server message ids: ULIDs, unique and time-ordered (lexicographic order = creation order within a node). */
export function newMessageId(now: number = Date.now()): string {
  return next(now);
}
