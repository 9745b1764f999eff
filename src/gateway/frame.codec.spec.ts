import { decodeFrame } from './frame.codec';

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
