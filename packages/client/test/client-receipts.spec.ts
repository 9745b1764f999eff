import type { Message, Receipt, RelayClient } from '../src/index';
import { FakeWebSocket, openClient, resetFakes, settle } from './fake-web-socket';

/** Protocol v1.1 in the SDK: `payload.seq`, `receipt` events and markRead. */
beforeEach(() => {
  jest.useFakeTimers();
  resetFakes();
});
afterEach(() => jest.useRealTimers());

function receipts(client: RelayClient): Receipt[] {
  const seen: Receipt[] = [];
  client.on('receipt', (r) => seen.push(r));
  return seen;
}

const receiptFrame = (cursor: string, seq: number, kind = 'read') => ({
  type: 'receipt',
  msg_id: cursor,
  payload: { conversation_id: 'c', user_id: 'bob', kind, seq, ts: 7 },
});

describe('receipts and conversation seq (v1.1)', () => {
  it('passes payload.seq on to the message, and leaves it out for older servers', async () => {
    const { client, ws } = await openClient();
    const seen: Message[] = [];
    client.on('message', (m) => seen.push(m));
    ws.receive({
      type: 'message',
      msg_id: 'E-1',
      payload: { id: 'm1', conversation_id: 'c', from: 'u', ts: 1, body: null, seq: 4 },
    });
    ws.deliver('E-2', 'm2');
    expect(seen.map((m) => m.seq)).toEqual([4, undefined]);
    expect('seq' in seen[1]).toBe(false);
  });

  it('emits each receipt once, in cursor order with messages, and confirms past it', async () => {
    const { client, ws } = await openClient();
    const seen = receipts(client);
    ws.deliver('E-1', 'm1');
    ws.receive(receiptFrame('E-2', 1));
    ws.receive(receiptFrame('E-2', 1)); // replayed
    ws.receive(receiptFrame('E-3', 1, 'delivered'));
    expect(seen).toEqual([
      { cursor: 'E-2', conversationId: 'c', userId: 'bob', kind: 'read', seq: 1, ts: 7 },
      { cursor: 'E-3', conversationId: 'c', userId: 'bob', kind: 'delivered', seq: 1, ts: 7 },
    ]);
    expect(client.lastCursor).toBe('E-3');
    await jest.advanceTimersByTimeAsync(1_000);
    expect(ws.sent.at(-1)).toEqual({ type: 'confirm', msg_id: 'E-3' });
  });

  it('reports a receipt frame without its fields as bad_frame and ignores it', async () => {
    const { client, ws } = await openClient();
    const seen = receipts(client);
    const errs: string[] = [];
    client.on('error', (e) => errs.push(e.code));
    ws.receive({ type: 'receipt', msg_id: 'E-1', payload: { conversation_id: 'c', kind: 'seen', seq: 1 } });
    expect(seen).toEqual([]);
    expect(errs).toEqual(['bad_frame']);
  });

  it('markRead coalesces per conversation, keeps the highest seq, and waits for the next welcome when offline', async () => {
    const { client, ws } = await openClient();
    client.markRead('c', 1);
    client.markRead('c', 3);
    client.markRead('c', 2);
    client.markRead('d', 5);
    expect(ws.sent.filter((f) => f.type === 'read')).toEqual([]);
    await jest.advanceTimersByTimeAsync(200);
    expect(ws.sent.filter((f) => f.type === 'read')).toEqual([
      { type: 'read', payload: { conversation_id: 'c', seq: 3 } },
      { type: 'read', payload: { conversation_id: 'd', seq: 5 } },
    ]);
    ws.serverClose(1006);
    client.markRead('c', 9);
    await jest.advanceTimersByTimeAsync(300);
    const next = FakeWebSocket.last;
    expect(next).not.toBe(ws);
    next.open();
    next.welcome();
    await settle();
    expect(next.sent.filter((f) => f.type === 'read')).toEqual([
      { type: 'read', payload: { conversation_id: 'c', seq: 9 } },
    ]);
    expect(() => client.markRead('', 1)).toThrow(TypeError);
    expect(() => client.markRead('c', 0)).toThrow(RangeError);
    expect(() => client.markRead('c', 1.5)).toThrow(RangeError);
  });
});
