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
 * Runs before JSON.parse, whose cost grows faster than linearly with nesting: exact on valid JSON;
 * on malformed text it terminates with some answer and JSON.parse reports the text afterwards.
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

const COLON = 0x3a;

/**
 * The string value of `key` in the top-level object of a JSON text, without parsing the rest: the
 * walk stops at the key. Undefined when the text is no object, has no such key at its top level
 * (spelled without escapes), or its value is not a string. For answering frames that are refused
 * before (or instead of) a full parse; on malformed text it may find nothing.
 */
export function topLevelString(text: string, key: string): string | undefined {
  const n = text.length;
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_OBJECT) return undefined;
  let depth = 0;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (end < 0) return undefined;
      if (depth === 1) {
        const after = skipSpace(text, end + 1);
        if (text.charCodeAt(after) === COLON) {
          if (end - i - 1 === key.length && text.startsWith(key, i + 1)) return stringAt(text, after + 1);
          i = after; // a key: its value is scanned next
          continue;
        }
      }
      i = end;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      depth++;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      if (--depth === 0) return undefined;
    }
  }
  return undefined;
}

/** The string literal starting at the first non-space from `from`, decoded; undefined otherwise. */
function stringAt(text: string, from: number): string | undefined {
  const start = skipSpace(text, from);
  if (text.charCodeAt(start) !== QUOTE) return undefined;
  const end = stringEnd(text, start);
  if (end < 0) return undefined;
  try {
    return JSON.parse(text.slice(start, end + 1)) as string;
  } catch {
    return undefined; // a bad escape
  }
}

function skipSpace(text: string, from: number): number {
  let i = from;
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
    i++;
  }
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
