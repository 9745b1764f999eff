const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/**
 * True when a JSON text nests arrays/objects deeper than `limit` levels (the outermost container is
 * level 1). One pass over the text without allocating: brackets inside strings do not count (escape
 * aware), and the walk stops at the first bracket past the limit.
 *
 * Meant for text JSON.parse already accepted: on malformed input the answer is meaningless.
 */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  const n = text.length;
  // Nesting deeper than `limit` needs limit+1 opening and as many closing brackets.
  if (n < 2 * (limit + 1)) return false;
  let depth = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = stringEnd(text, i);
      if (i < 0) return false;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > limit) return true;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}

/** Index of the quote closing the string that opens at `start`, or -1 when it is unterminated. */
function stringEnd(text: string, start: number): number {
  let end = text.indexOf('"', start + 1);
  while (end > 0) {
    // The quote is escaped when an odd number of backslashes precedes it.
    let k = end - 1;
    while (text.charCodeAt(k) === BACKSLASH) k--;
    if ((end - 1 - k) % 2 === 0) return end;
    end = text.indexOf('"', end + 1);
  }
  return -1;
}
