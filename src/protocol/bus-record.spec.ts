import { isBusRecord } from './wire-schemas';

describe('bus records (kind)', () => {
  const message = { id: 'm', conversation_id: 'c', from: 'u', ts: 1, ref: 'r', body: null };
  const receipt = {
    kind: 'receipt',
    id: 'r1',
    conversation_id: 'c',
    user_id: 'u',
    marker: 'read',
    seq: 2,
    ts: 1,
  };

  it('accepts messages with and without kind, and valid receipts', () => {
    expect(isBusRecord(message)).toBe(true);
    expect(isBusRecord({ ...message, kind: 'message' })).toBe(true);
    expect(isBusRecord(receipt)).toBe(true);
  });

  it('refuses known kinds that fail their schema', () => {
    expect(isBusRecord({ ...message, ref: undefined })).toBe(false);
    expect(isBusRecord({ ...receipt, marker: 'seen' })).toBe(false);
    expect(isBusRecord({ ...receipt, seq: 0 })).toBe(false);
    expect(isBusRecord({ ...receipt, seq: 1.5 })).toBe(false);
    expect(isBusRecord({ ...receipt, user_id: undefined })).toBe(false);
  });

  it('passes records of unknown kinds on (the router skips them), but not non-objects or a non-string kind', () => {
    expect(isBusRecord({ kind: 'membership', conversation_id: 'c', schema_version: 1 })).toBe(true);
    expect(isBusRecord({ kind: 'future' })).toBe(true);
    expect(isBusRecord({ kind: 7, id: 'x', conversation_id: 'c' })).toBe(false);
    expect(isBusRecord({ kind: '', id: 'x', conversation_id: 'c' })).toBe(false);
    expect(isBusRecord({ kind: 'future', id: 5 })).toBe(false);
    expect(isBusRecord(null)).toBe(false);
    expect(isBusRecord([receipt])).toBe(false);
  });
});
