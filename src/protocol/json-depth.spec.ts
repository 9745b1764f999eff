import { jsonDepthExceeds, topLevelString } from './json-depth';

/** Reference: depth of a parsed value (the outermost container is level 1). */
function depthOf(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depthOf));
  if (typeof v === 'object' && v !== null) return 1 + Math.max(0, ...Object.values(v).map(depthOf));
  return 0;
}

/** Deterministic pseudo-random JSON values with brackets, quotes and backslashes inside strings. */
function generate(seed: number, maxDepth: number): unknown {
  let x = seed;
  const rnd = (n: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x % n;
  };
  const strings = ['', '[', ']]', '{"a":[', '\\', '\\"[', 'x"}', '\\\\', 'plain'];
  const value = (d: number): unknown => {
    const k = d >= maxDepth ? rnd(3) : rnd(6);
    if (k === 0) return strings[rnd(strings.length)];
    if (k === 1) return rnd(100);
    if (k === 2) return rnd(2) === 0 ? null : true;
    if (k === 3 || k === 4) return Array.from({ length: rnd(4) }, () => value(d + 1));
    return Object.fromEntries(Array.from({ length: rnd(4) }, (_, i) => [strings[rnd(9)] + i, value(d + 1)]));
  };
  return value(0);
}

const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

describe('jsonDepthExceeds', () => {
  it('counts arrays and objects, the outermost one as level 1', () => {
    expect(jsonDepthExceeds('{"a":[{"b":[]}]}', 4)).toBe(false);
    expect(jsonDepthExceeds('{"a":[{"b":[]}]}', 3)).toBe(true);
    expect(jsonDepthExceeds(nested(64), 64)).toBe(false);
    expect(jsonDepthExceeds(nested(65), 64)).toBe(true);
    expect(jsonDepthExceeds('1', 0)).toBe(false);
    expect(jsonDepthExceeds('[]', 0)).toBe(true);
  });

  it('ignores brackets inside strings, escaped quotes included', () => {
    const text = JSON.stringify({ a: '[[[[{{{{', b: '\\"[[[', c: ['\\', '"]]]]'] });
    expect(jsonDepthExceeds(text, 2)).toBe(false);
    expect(jsonDepthExceeds(text, 1)).toBe(true);
    expect(jsonDepthExceeds(`["\\\\",${nested(3)}]`, 3)).toBe(true);
  });

  it('stops at the first bracket past the limit, without walking the rest', () => {
    // What follows the 65th bracket is never read: an unterminated string there changes nothing.
    expect(jsonDepthExceeds('['.repeat(65) + '"' + ' '.repeat(200), 64)).toBe(true);
    expect(jsonDepthExceeds(nested(32_000), 64)).toBe(true);
  });

  it('agrees with the depth of the parsed value on generated documents', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const text = JSON.stringify(generate(seed, 8));
      const depth = depthOf(JSON.parse(text));
      expect(jsonDepthExceeds(text, depth)).toBe(false);
      if (depth > 0) expect(jsonDepthExceeds(text, depth - 1)).toBe(true);
    }
  });
});

describe('topLevelString', () => {
  it('finds a top-level string value without being fooled by nested keys or look-alike values', () => {
    expect(topLevelString('{"msg_id":"a"}', 'msg_id')).toBe('a');
    expect(
      topLevelString(' \n{ "type" : "msg_id" , "p":{"msg_id":"no"}, "msg_id" :\t"yes" }', 'msg_id'),
    ).toBe('yes');
    expect(topLevelString('{"x":["msg_id",{"msg_id":"no"}],"msg_id":"yes"}', 'msg_id')).toBe('yes');
    expect(topLevelString('{"msg_idx":"no","xmsg_id":"no"}', 'msg_id')).toBeUndefined();
    expect(topLevelString(String.raw`{"k":"\\","msg_id":"a\\\"b\u00e9"}`, 'msg_id')).toBe('a\\"b\u00e9');
    expect(topLevelString('{"msg_id":"\\u00e9"}', 'msg_id')).toBe('\u00e9');
  });

  it('is undefined for non-objects, non-string values and missing keys', () => {
    for (const text of [
      '["msg_id","a"]',
      '"msg_id"',
      '{"msg_id":5}',
      '{"msg_id":{"a":1}}',
      '{}',
      '',
      '{"a":1}',
    ]) {
      expect(topLevelString(text, 'msg_id')).toBeUndefined();
    }
  });

  it('stops at the key: what follows is never read', () => {
    expect(topLevelString('{"msg_id":"early","p":' + '['.repeat(50_000), 'msg_id')).toBe('early');
  });

  it('terminates on malformed text', () => {
    for (const text of [
      '{"msg_id',
      '{"msg_id":',
      '{"msg_id":"abc',
      '{"a":"\\',
      '{]]]"msg_id":"x"',
      '{"a":[}',
    ]) {
      expect(() => topLevelString(text, 'msg_id')).not.toThrow();
    }
  });

  it('agrees with JSON.parse on generated frames', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const body = generate(seed, 6);
      const ref = `r${seed}"\\[{`;
      const frame =
        seed % 2 ? { type: 'send', payload: { msg_id: 'nested', body }, msg_id: ref } : { msg_id: ref, body };
      const text = JSON.stringify(frame, null, seed % 3 === 0 ? 2 : undefined);
      expect(topLevelString(text, 'msg_id')).toBe(ref);
    }
  });
});
