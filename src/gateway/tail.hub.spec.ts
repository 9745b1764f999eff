import { bodyPreview, TailEvent, TailHub, TailSink } from './tail.hub';

const ack = (conversation: string, user: string, n = 0): Extract<TailEvent, { kind: 'ack' }> => ({
  kind: 'ack',
  at: 0,
  conversation,
  user,
  msg_id: `m${n}`,
  ref: `r${n}`,
});

/** A sink that accepts writes until `open` is false (like a response whose buffer is full). */
function sink(): TailSink & { got: TailEvent[]; open: boolean } {
  const s = {
    got: [] as TailEvent[],
    open: true,
    write(e: TailEvent) {
      s.got.push(e);
      return s.open;
    },
  };
  return s;
}

describe('TailHub', () => {
  it('is inactive without subscribers, and routes by conversation or by user', () => {
    const hub = new TailHub();
    expect(hub.active).toBe(false);
    hub.publish(ack('c', 'u')); // nobody listens: nothing to do
    const byConv = sink();
    const byUser = sink();
    const a = hub.subscribe({ conversation: 'c' }, byConv)!;
    const b = hub.subscribe({ user: 'u' }, byUser)!;
    expect(hub.active).toBe(true);
    hub.publish(ack('c', 'x', 1));
    hub.publish(ack('d', 'u', 2));
    hub.publish(ack('d', 'x', 3));
    expect(byConv.got.map((e) => (e as { msg_id: string }).msg_id)).toEqual(['m1']);
    expect(byUser.got.map((e) => (e as { msg_id: string }).msg_id)).toEqual(['m2']);
    hub.unsubscribe(a);
    hub.unsubscribe(b);
    hub.unsubscribe(b); // twice is harmless
    expect(hub.active).toBe(false);
    expect(hub.subscribers).toBe(0);
  });

  it('refuses subscribers beyond maxSubscribers', () => {
    const hub = new TailHub();
    for (let i = 0; i < hub.limits.maxSubscribers; i++)
      expect(hub.subscribe({ user: `u${i}` }, sink())).not.toBeNull();
    expect(hub.subscribe({ user: 'one-more' }, sink())).toBeNull();
  });

  it('queues at most maxQueued events for a backed-up subscriber, then reports what it dropped', () => {
    const hub = new TailHub();
    const s = sink();
    const sub = hub.subscribe({ conversation: 'c' }, s)!;
    s.open = false;
    hub.publish(ack('c', 'u', 0)); // written; the sink says it is full
    const extra = 5;
    for (let i = 1; i <= hub.limits.maxQueued + extra; i++) hub.publish(ack('c', 'u', i));
    expect(s.got).toHaveLength(1);
    expect(sub.queued).toBe(hub.limits.maxQueued);
    s.open = true;
    sub.drained();
    expect(s.got).toHaveLength(1 + hub.limits.maxQueued + 1);
    expect(s.got.at(-2)).toMatchObject({ msg_id: `m${hub.limits.maxQueued}` }); // oldest kept, newest dropped
    expect(s.got.at(-1)).toMatchObject({ kind: 'dropped', count: extra });
    expect(sub.queued).toBe(0);
  });

  it('answers wants() only for followed conversations and users', () => {
    const hub = new TailHub();
    expect(hub.wants('c', 'u')).toBe(false);
    hub.subscribe({ conversation: 'c' }, sink());
    hub.subscribe({ user: 'u' }, sink());
    expect([
      hub.wants('c', 'x'),
      hub.wants('d', 'u'),
      hub.wants('d', 'x'),
      hub.wants(undefined, 'x'),
    ]).toEqual([true, true, false, false]);
  });

  it('shows bodies as JSON, cut at 1 KiB', () => {
    expect(bodyPreview({ text: 'hi' })).toBe('{"text":"hi"}');
    const long = bodyPreview('x'.repeat(5_000));
    expect(long).toHaveLength(1_025);
    expect(long.endsWith('…')).toBe(true);
  });
});
