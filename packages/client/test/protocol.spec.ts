import { parseServerFrame } from '../src/protocol';

describe('parseServerFrame', () => {
  it('parses a message frame', () => {
    const r = parseServerFrame(
      JSON.stringify({
        type: 'message',
        msg_id: 'E-000000000001',
        payload: { id: 'm1', conversation_id: 'c', from: 'u', ts: 5, body: { t: 'hi' } },
      }),
    );
    expect(r).toEqual({
      ok: true,
      frame: {
        type: 'message',
        msg_id: 'E-000000000001',
        payload: { id: 'm1', conversation_id: 'c', from: 'u', ts: 5, body: { t: 'hi' } },
      },
    });
  });

  it.each([
    ['not JSON', '{'],
    ['binary', new Uint8Array([1])],
    ['no type', '{"payload":{}}'],
    ['message without cursor', '{"type":"message","payload":{"id":"m","conversation_id":"c"}}'],
    ['message without id', '{"type":"message","msg_id":"x","payload":{"conversation_id":"c"}}'],
    ['ack without ref', '{"type":"ack","msg_id":"m","payload":{}}'],
    ['welcome without recovered', '{"type":"welcome","payload":{"heartbeat_ms":1}}'],
  ])('rejects %s', (_name, data) => {
    expect(parseServerFrame(data).ok).toBe(false);
  });

  it('reads welcome.cursor when the server sends one, and tolerates its absence', () => {
    const welcome = (extra: object) =>
      parseServerFrame(
        JSON.stringify({
          type: 'welcome',
          payload: { user_id: 'u', node_id: 'n', heartbeat_ms: 5, recovered: false, ...extra },
        }),
      );
    const base = { user_id: 'u', node_id: 'n', heartbeat_ms: 5, recovered: false };
    expect(welcome({ cursor: 'E-000000000003' })).toEqual({
      ok: true,
      frame: { type: 'welcome', payload: { ...base, cursor: 'E-000000000003' } },
    });
    expect(welcome({})).toEqual({ ok: true, frame: { type: 'welcome', payload: base } });
    // Not a usable cursor: ignored rather than adopted.
    expect(welcome({ cursor: '' })).toEqual({ ok: true, frame: { type: 'welcome', payload: base } });
    expect(welcome({ cursor: 3 })).toEqual({ ok: true, frame: { type: 'welcome', payload: base } });
  });

  it('ignores unknown frame types instead of failing (forward compatibility)', () => {
    // (v1.1 made `typing` known; a type from a later version stands in for it.)
    expect(parseServerFrame('{"type":"hologram","payload":{}}')).toEqual({ ok: true, frame: undefined });
  });

  it('keeps the ref of an error frame and tolerates a missing message', () => {
    expect(parseServerFrame('{"type":"error","msg_id":"r1","payload":{"code":"forbidden"}}')).toEqual({
      ok: true,
      frame: { type: 'error', msg_id: 'r1', payload: { code: 'forbidden', message: 'forbidden' } },
    });
  });
});
