interface CryptoLike {
  randomUUID?: () => string;
}

/**
 * A fresh client ref for a send (36 chars; the protocol allows 1..64). Uses crypto.randomUUID
 * where available (browsers in secure contexts, Node >= 19 globally) and otherwise Math.random,
 * which is enough here: a ref only has to be unique among one user's sends within ~10 minutes.
 */
export function newRef(): string {
  const crypto = (globalThis as unknown as { crypto?: CryptoLike }).crypto;
  if (typeof crypto?.randomUUID === 'function') return crypto.randomUUID();
  const hex = (n: number) =>
    Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');
  return `${hex(8)}-${hex(4)}-4${hex(3)}-${hex(4)}-${hex(12)}`;
}

/** UTF-8 byte length of a string, without TextEncoder (to keep the source free of lib assumptions). */
export function utf8Length(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // A surrogate pair encodes one 4-byte code point (a lone surrogate counts as 3, like TextEncoder's U+FFFD).
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
