import { Envelope } from '../../protocol/envelope';
import { planResume } from '../cursor';
import { MemoryOutboxDriver } from './memory-outbox.driver';

const env = (id: string): Envelope => ({ id, conversation_id: 'c', from: 'a', ts: 1, body: id });

describe('MemoryOutboxDriver', () => {
  let now = 1_000;
  const clock = () => now;

  it('gives gapless per-user seqs in input order and is idempotent per message', async () => {
    const o = new MemoryOutboxDriver(60_000, clock);
    const a = await o.append([
      { userId: 'u', envelope: env('m1') },
      { userId: 'v', envelope: env('m1') },
      { userId: 'u', envelope: env('m2') },
    ]);
    expect(a.map((d) => [d.userId, d.seq])).toEqual([
      ['u', 1],
      ['v', 1],
      ['u', 2],
    ]);
    const again = await o.append([
      { userId: 'u', envelope: env('m2') },
      { userId: 'u', envelope: env('m3') },
    ]);
    expect(again.map((d) => d.seq)).toEqual([2, 3]);
    expect((await o.readAfter('u', 1, 10)).map((d) => d.envelope.id)).toEqual(['m2', 'm3']);
    expect((await o.readAfter('u', 0, 2)).map((d) => d.seq)).toEqual([1, 2]);
  });

  it('repeats within one call get the first seq, also for a copy of the envelope further on', async () => {
    const o = new MemoryOutboxDriver(60_000, clock);
    const m1 = env('m1');
    const a = await o.append([
      { userId: 'u', envelope: m1 },
      { userId: 'u', envelope: m1 },
      { userId: 'v', envelope: env('m2') },
      { userId: 'u', envelope: env('m1') },
      { userId: 'v', envelope: env('m1') },
    ]);
    expect(a.map((d) => [d.userId, d.envelope.id, d.seq])).toEqual([
      ['u', 'm1', 1],
      ['u', 'm1', 1],
      ['v', 'm2', 1],
      ['u', 'm1', 1],
      ['v', 'm1', 2],
    ]);
    expect((await o.readAfter('u', 0, 10)).map((d) => d.envelope.id)).toEqual(['m1']);
  });

  it("hands back a new entry's JSON (built from the caller's) with the call that stored it, and only then", async () => {
    const o = new MemoryOutboxDriver(60_000, clock);
    const m1 = env('m1');
    const json = JSON.stringify(m1);
    const first = await o.append([
      { userId: 'u', envelope: m1, json },
      { userId: 'v', envelope: m1, json },
      { userId: 'u', envelope: env('m2') },
    ]);
    expect(first.map((d) => d.json)).toEqual(first.map((d) => JSON.stringify(d.envelope)));
    expect(JSON.parse(first[0].json!)).toEqual({ ...m1, seq: 1 });
    const again = await o.append([
      { userId: 'u', envelope: m1, json },
      { userId: 'w', envelope: m1, json },
    ]);
    expect(again.map((d) => d.json)).toEqual([undefined, undefined]);
  });

  it('drops an entry with its last delivery; a later append stores it anew', async () => {
    now = 1_000;
    const o = new MemoryOutboxDriver(60_000, clock, { maxPerUser: 1, maxBytesPerUser: Infinity });
    await o.append([{ userId: 'u', envelope: env('m1') }]);
    await o.append([{ userId: 'u', envelope: env('m2') }]); // evicts u's m1: m1 had no other delivery
    const again = await o.append([{ userId: 'v', envelope: env('m1') }]);
    expect(again[0].seq).toBe(1);
    expect((again[0].envelope as Envelope).seq).toBe(3); // a new conversation order number: the first copy is gone
    const kept = await o.append([{ userId: 'u', envelope: env('m2') }]);
    expect(kept[0].seq).toBe(2); // still held: idempotent
  });

  it('hides and purges expired deliveries, keeping the head so old cursors are detected', async () => {
    now = 1_000;
    const o = new MemoryOutboxDriver(100, clock);
    await o.append([
      { userId: 'u', envelope: env('m1') },
      { userId: 'u', envelope: env('m2') },
    ]);
    now = 1_050;
    await o.append([{ userId: 'u', envelope: env('m3') }]);
    now = 1_120;
    expect((await o.readAfter('u', 0, 10)).map((d) => d.seq)).toEqual([3]);
    expect(await o.retention('u', 0)).toEqual({ head: 3, firstRetainedAfter: 3 });
    expect(await o.retention('u', 2)).toEqual({ head: 3, firstRetainedAfter: 3 });
    expect(await o.purgeExpired(1)).toBe(1);
    expect(await o.purgeExpired(10)).toBe(1);
    expect(await o.purgeExpired(10)).toBe(0);
    now = 1_200;
    expect(await o.retention('u', 0)).toEqual({ head: 3, firstRetainedAfter: null });
  });

  it('keeps at most maxPerUser deliveries per user: older ones go and a resume from before them is not recovered', async () => {
    const o = new MemoryOutboxDriver(60_000, clock, { maxPerUser: 3, maxBytesPerUser: 1_000_000 });
    for (const id of ['m1', 'm2', 'm3', 'm4', 'm5']) await o.append([{ userId: 'u', envelope: env(id) }]);
    await o.append([{ userId: 'v', envelope: env('m5') }]);
    expect((await o.readAfter('u', 0, 10)).map((d) => [d.seq, d.envelope.id])).toEqual([
      [3, 'm3'],
      [4, 'm4'],
      [5, 'm5'],
    ]);
    expect(await o.retention('u', 1)).toEqual({ head: 5, firstRetainedAfter: 3 });
    const epoch = o.epoch();
    expect(planResume({ epoch, seq: 1 }, epoch, await o.retention('u', 1)).recovered).toBe(false);
    expect(planResume({ epoch, seq: 2 }, epoch, await o.retention('u', 2)).recovered).toBe(true);
    // Seqs go on; the entry shared with v stays for v.
    expect((await o.append([{ userId: 'u', envelope: env('m6') }]))[0].seq).toBe(6);
    expect((await o.readAfter('v', 0, 10)).map((d) => d.envelope.id)).toEqual(['m5']);
    expect((await o.stats()).rows).toBe(4);
  });

  it('keeps at most maxBytesPerUser of envelopes per user, but always the newest delivery', async () => {
    const o = new MemoryOutboxDriver(60_000, clock, { maxPerUser: 1_000, maxBytesPerUser: 2_500 });
    const big = (id: string): Envelope => ({ ...env(id), body: 'x'.repeat(1_000) });
    for (const id of ['b1', 'b2', 'b3']) await o.append([{ userId: 'u', envelope: big(id) }]);
    expect((await o.readAfter('u', 0, 10)).map((d) => d.envelope.id)).toEqual(['b2', 'b3']);
    await o.append([{ userId: 'u', envelope: { ...env('huge'), body: 'y'.repeat(10_000) } }]);
    expect((await o.readAfter('u', 0, 10)).map((d) => d.envelope.id)).toEqual(['huge']);
    expect(await o.retention('u', 0)).toEqual({ head: 4, firstRetainedAfter: 4 });
  });
});
