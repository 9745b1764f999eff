import { Config } from '../config/config.module';
import { MemoryOutboxDriver } from '../outbox/drivers/memory-outbox.driver';
import { ReceiptRecord } from '../protocol/bus-record';
import { isReceiptEntry } from '../protocol/outbox-entry';
import { MemoryMarkerStoreDriver } from '../receipts/drivers/memory-marker-store.driver';
import { ReceiptRouting } from './receipt-routing';

const config = { receipts: { fanoutMaxMembers: 3 } } as Config;
let n = 0;
const read = (
  user: string,
  seq: number,
  conversation = 'c',
  marker: 'read' | 'delivered' = 'read',
): ReceiptRecord => ({
  kind: 'receipt',
  id: `r${++n}`,
  conversation_id: conversation,
  user_id: user,
  marker,
  seq,
  ts: 1,
});

async function setup(members: string[], senders: string[]) {
  const outbox = new MemoryOutboxDriver(60_000);
  const markers = new MemoryMarkerStoreDriver();
  await outbox.append(
    senders.flatMap((from, i) =>
      members.map((userId) => ({
        userId,
        envelope: { id: `m${i + 1}`, conversation_id: 'c', from, ts: 1, body: null },
      })),
    ),
  );
  const routing = new ReceiptRouting(outbox, markers, config);
  return { routing, markers, members: new Map([['c', members]]) };
}

describe('ReceiptRouting', () => {
  it('coalesces a batch to the highest seq per member and kind, clamps to the head, and drops non-members', async () => {
    const { routing, markers, members } = await setup(['a', 'b', 'c'], ['a', 'a', 'b']);
    const stored = await routing.route(
      [
        read('b', 1),
        read('b', 2),
        read('b', 1),
        read('c', 99),
        read('b', 2, 'c', 'delivered'),
        read('zed', 3),
      ],
      members,
    );
    const payloads = [...new Map(stored.map((d) => [d.envelope.id, d.envelope])).values()].map((e) =>
      isReceiptEntry(e) ? [e.payload.user_id, e.payload.kind, e.payload.seq] : null,
    );
    expect(payloads).toEqual([
      ['b', 'read', 2],
      ['c', 'read', 3],
      ['b', 'delivered', 2],
    ]);
    expect(stored.filter((d) => d.userId === 'a')).toHaveLength(3); // every member of a small conversation
    expect(await markers.read([{ conversationId: 'c', userId: 'b' }])).toEqual([
      { conversationId: 'c', userId: 'b', delivered: 2, read: 2 },
    ]);
  });

  it('drops receipts that do not move a marker forward, also when the batch comes again', async () => {
    const { routing, members } = await setup(['a', 'b'], ['a', 'a']);
    const first = [read('b', 2)];
    expect(await routing.route(first, members)).toHaveLength(2);
    expect(await routing.route(first, members)).toEqual([]); // redelivered after the markers moved
    expect(await routing.route([read('b', 1)], members)).toEqual([]);
  });

  it('above the fan-out size sends a receipt only to the senders it covers', async () => {
    const { routing, markers, members } = await setup(['a', 'b', 'c', 'd', 'e'], ['a', 'b', 'c']);
    const first = await routing.route([read('e', 2)], members);
    expect(first.map((d) => d.userId).sort()).toEqual(['a', 'b']);
    const second = await routing.route([read('e', 3)], members);
    expect(second.map((d) => d.userId)).toEqual(['c']); // only what is newly covered
    expect((await markers.read([{ conversationId: 'c', userId: 'e' }]))[0].read).toBe(3);
  });
});
