import { errorFrame } from '../protocol/frames';
import { decodeFrame, frameRef } from './frame.codec';

describe('decodeFrame', () => {
  it('accepts each client frame type and ignores unknown fields', () => {
    expect(decodeFrame('{"type":"hello","payload":{"last_msg_id":"e-1"},"extra":1}')).toMatchObject({
      ok: true,
      frame: { type: 'hello', payload: { last_msg_id: 'e-1' } },
    });
    expect(decodeFrame('{"type":"hello"}')).toMatchObject({ ok: true });
    expect(
      decodeFrame('{"type":"send","msg_id":"r","payload":{"conversation_id":"c","body":null}}'),
    ).toMatchObject({ ok: true });
    expect(decodeFrame('{"type":"confirm","msg_id":"x-000000000001"}')).toMatchObject({ ok: true });
    expect(decodeFrame('{"type":"ping"}')).toMatchObject({ ok: true });
  });

  it.each([
    ['[1,2]', 'bad_frame'],
    ['"hello"', 'bad_frame'],
    ['{"type":1}', 'bad_frame'],
    ['{"type":"hello","payload":"x"}', 'bad_frame'],
    ['{"type":"hello","payload":{"last_msg_id":5}}', 'bad_frame'],
    ['{"type":"send","msg_id":"r","payload":{"body":1}}', 'bad_frame'],
    ['{"type":"send","msg_id":"r","payload":{"conversation_id":"","body":1}}', 'bad_frame'],
    ['{"type":"send","payload":{"conversation_id":"c","body":1}}', 'bad_frame'],
    ['{"type":"send","msg_id":"r","payload":{"conversation_id":"c"}}', 'bad_frame'],
    ['{"type":"confirm"}', 'bad_frame'],
    ['{"type":"subscribe"}', 'unknown_type'],
    ['{oops', 'bad_frame'],
  ])('%s -> %s', (text, code) => {
    const r = decodeFrame(text);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.code).toBe(code);
      expect(r.message.length).toBeGreaterThan(0);
    }
  });

  it('echoes the client ref in errors when the frame has one', () => {
    const r = decodeFrame('{"type":"send","msg_id":"my-ref","payload":{}}');
    expect(r).toMatchObject({ ok: false, code: 'bad_frame', ref: 'my-ref' });
  });

  it('caps the length of a ref', () => {
    const long = 'x'.repeat(65);
    expect(
      decodeFrame(`{"type":"send","msg_id":"${long}","payload":{"conversation_id":"c","body":1}}`).ok,
    ).toBe(false);
    const max = 'x'.repeat(64);
    expect(
      decodeFrame(`{"type":"send","msg_id":"${max}","payload":{"conversation_id":"c","body":1}}`).ok,
    ).toBe(true);
  });
});

describe('decodeFrame bounds', () => {
  const send = (body: string, ref = 'r', conversation = 'c') =>
    `{"type":"send","msg_id":${JSON.stringify(ref)},"payload":{"conversation_id":${JSON.stringify(conversation)},"body":${body}}}`;
  const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

  it('accepts a body nested up to MAX_JSON_DEPTH-2 levels (frame and payload are levels 1 and 2)', () => {
    expect(decodeFrame(send(nested(62)), 64).ok).toBe(true);
    expect(decodeFrame(send(nested(6)), 8).ok).toBe(true);
  });

  it.each([63, 1_000, 6_000, 30_000])(
    'refuses a body nested %i levels with bad_frame and the ref',
    (depth) => {
      expect(decodeFrame(send(nested(depth), 'deep-ref'), 64)).toEqual({
        ok: false,
        code: 'bad_frame',
        message: 'frame nests deeper than 64 levels',
        ref: 'deep-ref',
      });
    },
  );

  it('checks depth on every frame type, before parsing', () => {
    expect(decodeFrame(`{"type":"ping","x":${nested(63)}}`, 64).ok).toBe(true);
    expect(decodeFrame(`{"type":"ping","x":${nested(64)}}`, 64)).toMatchObject({
      ok: false,
      code: 'bad_frame',
    });
    expect(decodeFrame(`{"type":"nope","x":${nested(64)}}`, 64)).toMatchObject({
      ok: false,
      code: 'bad_frame',
    });
    expect(decodeFrame(nested(100), 64)).toMatchObject({ ok: false, code: 'bad_frame' });
    // Malformed and too deep: refused as too deep, unparsed (bad_frame either way).
    expect(decodeFrame('{"msg_id":"m","x":' + '['.repeat(200), 64)).toEqual({
      ok: false,
      code: 'bad_frame',
      message: 'frame nests deeper than 64 levels',
      ref: 'm',
    });
    expect(decodeFrame('['.repeat(100), 64)).toMatchObject({ message: 'frame is not valid JSON' });
  });

  it.each(['a b', 'x'.repeat(129), 'café', '../x', 'c/d', 'a\nb', 'a"b'])(
    'refuses conversation_id %j (outside ^[A-Za-z0-9_.:@-]{1,128}$)',
    (id) => {
      expect(decodeFrame(send('1', 'r', id))).toMatchObject({ ok: false, code: 'bad_frame', ref: 'r' });
    },
  );

  it.each(['c', 'team_1.a:b@x-y', 'x'.repeat(128)])('accepts conversation_id %j', (id) => {
    expect(decodeFrame(send('1', 'r', id)).ok).toBe(true);
  });

  it('echoes at most the first 64 characters of a msg_id, whatever the error', () => {
    const huge = 'a'.repeat(10) + 'b'.repeat(60_000);
    const first64 = huge.slice(0, 64);
    for (const text of [
      `{"type":"x","msg_id":"${huge}"}`,
      `{"type":"send","msg_id":"${huge}","payload":{}}`,
      send('1', huge),
      send(nested(100), huge),
      `{"type":"confirm","msg_id":"${huge}"}`,
    ]) {
      const r = decodeFrame(text);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.ref).toBe(first64);
    }
  });

  it('frameRef: the ref of a frame refused unprocessed, cut to 64 characters', () => {
    expect(frameRef(`{"type":"send","msg_id":"${'z'.repeat(100)}"}`)).toBe('z'.repeat(64));
    expect(frameRef('{"type":"ping"}')).toBeUndefined();
    expect(frameRef('{"msg_id":5}')).toBeUndefined();
    expect(frameRef('not json')).toBeUndefined();
    expect(frameRef('null')).toBeUndefined();
  });

  it('errorFrame cuts any ref to 64 characters', () => {
    const frame = JSON.parse(errorFrame('bad_frame', 'm', 'q'.repeat(1_000))) as { msg_id: string };
    expect(frame.msg_id).toBe('q'.repeat(64));
    expect(JSON.parse(errorFrame('bad_frame', 'm', 'short'))).toMatchObject({ msg_id: 'short' });
  });
});
