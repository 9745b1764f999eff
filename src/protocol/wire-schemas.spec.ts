import { IngressMessage } from './envelope';
import {
  ACK_RECORD_SCHEMA,
  compileWireSchema,
  deliveriesInRange,
  isIngressMessage,
  PUSH_BATCH_SCHEMA,
} from './wire-schemas';

/** `base` with one field replaced (undefined: removed). */
function withField(base: object, key: string, value: unknown): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...base };
  if (value === undefined) delete copy[key];
  else copy[key] = value;
  return copy;
}

type Case = [name: string, value: unknown];
const notObjects = [null, undefined, 'x', 5, true, []].map((v): Case => [
  JSON.stringify(v) ?? 'undefined',
  v,
]);
const without = (base: object, keys: string[]) =>
  keys.map((k): Case => [`without ${k}`, withField(base, k, undefined)]);

describe('IngressMessage (bus record)', () => {
  const valid: IngressMessage = {
    id: 'm1',
    conversation_id: 'c1',
    from: 'u1',
    ts: 5,
    body: { t: 'hi' },
    ref: 'r1',
  };

  it('accepts a record, with any body or none, and unknown fields', () => {
    expect(isIngressMessage(valid)).toBe(true);
    expect(isIngressMessage({ ...valid, body: null })).toBe(true);
    expect(isIngressMessage({ ...valid, body: [1, 'a'] })).toBe(true);
    expect(isIngressMessage(withField(valid, 'body', undefined))).toBe(true);
    expect(isIngressMessage({ ...valid, added_later: 1 })).toBe(true);
  });

  it.each<Case>([
    ...without(valid, ['id', 'conversation_id', 'from', 'ts', 'ref']),
    ['id a number', withField(valid, 'id', 1)],
    ['conversation_id null', withField(valid, 'conversation_id', null)],
    ['from an object', withField(valid, 'from', {})],
    ['ts a string', withField(valid, 'ts', '5')],
    ['ref a number', withField(valid, 'ref', 7)],
    ...notObjects,
  ])('refuses %s', (_name, v) => {
    expect(isIngressMessage(v)).toBe(false);
  });
});

describe('PushBatch (node channel)', () => {
  const isShaped = compileWireSchema(PUSH_BATCH_SCHEMA);
  const envelope = { id: 'm1', conversation_id: 'c1', from: 'u1', ts: 5, body: 1 };
  const valid = { epoch: 'E', envelopes: [envelope], deliveries: [{ u: 'u1', s: 1, e: 0 }] };

  it('accepts a batch, with or without resync, empty or not, with unknown fields', () => {
    expect(isShaped(valid)).toBe(true);
    expect(isShaped({ ...valid, resync: true })).toBe(true);
    expect(isShaped({ epoch: 'E', envelopes: [], deliveries: [] })).toBe(true);
    expect(isShaped({ ...valid, deliveries: [{ u: 'u1', s: 1, e: 0, x: 1 }], later: 1 })).toBe(true);
  });

  const delivery = (d: object) => ({ ...valid, deliveries: [d] });
  it.each<Case>([
    ...without(valid, ['epoch', 'envelopes', 'deliveries']),
    ['epoch a number', withField(valid, 'epoch', 1)],
    ['envelopes an object', withField(valid, 'envelopes', { 0: envelope })],
    ['an envelope that is no object', withField(valid, 'envelopes', ['m1'])],
    ['an envelope that is null', withField(valid, 'envelopes', [null])],
    ['deliveries an object', withField(valid, 'deliveries', {})],
    ['a delivery that is no object', withField(valid, 'deliveries', [3])],
    ['a delivery without u', delivery({ s: 1, e: 0 })],
    ['a delivery without s', delivery({ u: 'u1', e: 0 })],
    ['a delivery without e', delivery({ u: 'u1', s: 1 })],
    ['u a number', delivery({ u: 1, s: 1, e: 0 })],
    ['s a string', delivery({ u: 'u1', s: '1', e: 0 })],
    ['e a string', delivery({ u: 'u1', s: 1, e: '0' })],
    ['e negative', delivery({ u: 'u1', s: 1, e: -1 })],
    ['e fractional', delivery({ u: 'u1', s: 1, e: 0.5 })],
    ['resync a string', { ...valid, resync: 'yes' }],
    ...notObjects,
  ])('refuses %s', (_name, v) => {
    expect(isShaped(v)).toBe(false);
  });

  it('deliveriesInRange: every delivery points at an envelope of the batch', () => {
    expect(deliveriesInRange(valid)).toBe(true);
    expect(deliveriesInRange({ envelopes: [], deliveries: [] })).toBe(true);
    expect(deliveriesInRange({ envelopes: [envelope, envelope], deliveries: [{ e: 1 }, { e: 0 }] })).toBe(
      true,
    );
    expect(deliveriesInRange({ envelopes: [envelope], deliveries: [{ e: 0 }, { e: 1 }] })).toBe(false);
    expect(deliveriesInRange({ envelopes: [], deliveries: [{ e: 0 }] })).toBe(false);
  });
});

describe('AckRecord (dedupe store)', () => {
  const isRecord = compileWireSchema(ACK_RECORD_SCHEMA);
  const valid = { id: 'm1', ts: 5, conversation_id: 'c1' };

  it('accepts a record, with unknown fields', () => {
    expect(isRecord(valid)).toBe(true);
    expect(isRecord({ ...valid, later: 1 })).toBe(true);
  });

  it.each<Case>([
    ...without(valid, ['id', 'ts', 'conversation_id']),
    ['id a number', withField(valid, 'id', 1)],
    ['ts a string', withField(valid, 'ts', '5')],
    ['ts null', withField(valid, 'ts', null)],
    ['conversation_id an array', withField(valid, 'conversation_id', ['c1'])],
    ...notObjects,
  ])('refuses %s', (_name, v) => {
    expect(isRecord(v)).toBe(false);
  });
});
