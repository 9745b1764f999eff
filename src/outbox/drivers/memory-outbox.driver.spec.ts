import { Envelope } from '../../protocol/envelope';
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
});
