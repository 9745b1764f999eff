import { decodeCursor, encodeCursor, planResume } from './cursor';

describe('cursors', () => {
  it('round-trips and sorts as strings in seq order', () => {
    const a = encodeCursor('ab12', 9);
    const b = encodeCursor('ab12', 10);
    expect(decodeCursor(a)).toEqual({ epoch: 'ab12', seq: 9 });
    expect(a < b).toBe(true);
  });

  it.each(['', 'nodash', '-5', 'ep-', 'ep-12a', 'ep-1234567890123456'])('rejects %p', (raw) => {
    expect(decodeCursor(raw)).toBeNull();
  });
});

describe('planResume', () => {
  const E = 'ep';
  it('fresh device: everything retained, recovered', () => {
    expect(planResume(null, E, { head: 5, firstRetainedAfter: 3 })).toEqual({ recovered: true, afterSeq: 0 });
  });
  it('caught-up cursor: nothing to replay, recovered', () => {
    expect(planResume({ epoch: E, seq: 5 }, E, { head: 5, firstRetainedAfter: null })).toEqual({
      recovered: true,
      afterSeq: 5,
    });
  });
  it('intact tail: replay after the cursor, recovered', () => {
    expect(planResume({ epoch: E, seq: 3 }, E, { head: 5, firstRetainedAfter: 4 })).toEqual({
      recovered: true,
      afterSeq: 3,
    });
  });
  it('expired deliveries after the cursor: not recovered, resume just before what is left', () => {
    const E3 = { epoch: E, seq: 3 };
    expect(planResume(E3, E, { head: 9, firstRetainedAfter: 7 })).toEqual({ recovered: false, afterSeq: 6 });
    expect(planResume(E3, E, { head: 9, firstRetainedAfter: null })).toEqual({
      recovered: false,
      afterSeq: 9,
    });
  });
  it('another store generation: not recovered, replay all retained', () => {
    const old = { epoch: 'old', seq: 3 };
    expect(planResume(old, E, { head: 9, firstRetainedAfter: 1 })).toEqual({ recovered: false, afterSeq: 0 });
    expect(planResume(old, E, { head: 9, firstRetainedAfter: 5 })).toEqual({ recovered: false, afterSeq: 4 });
    expect(planResume(old, E, { head: 0, firstRetainedAfter: null })).toEqual({
      recovered: false,
      afterSeq: 0,
    });
  });
  it('a cursor beyond the head of this store: not recovered, replay all retained', () => {
    const future = { epoch: E, seq: 30 };
    expect(planResume(future, E, { head: 9, firstRetainedAfter: null })).toEqual({
      recovered: false,
      afterSeq: 0,
    });
  });
  it('the adopted cursor is honoured on the next reconnect', () => {
    const state = { head: 9, firstRetainedAfter: 7 };
    const plan = planResume({ epoch: E, seq: 3 }, E, state);
    expect(planResume({ epoch: E, seq: plan.afterSeq }, E, state)).toEqual({ recovered: true, afterSeq: 6 });
  });
});
