import type { PresenceChange, RelayClient, TypingEvent } from '../src/index';
import { FakeWebSocket, openClient, resetFakes, settle } from './fake-web-socket';

/** v1.1 ephemeral live features in the SDK: typing() debounce and expiry, presence subscriptions. */
beforeEach(() => {
  jest.useFakeTimers();
  resetFakes();
});
afterEach(() => jest.useRealTimers());

const typingSent = (ws: FakeWebSocket) => ws.sentOfType('typing').map((f) => f.payload?.state);

describe('typing()', () => {
  it('sends start at once, re-sends it at most once per interval while typing, and stop when idle', async () => {
    const { client, ws } = await openClient({ typingIntervalMs: 2000, typingIdleMs: 3000 });
    client.typing('c1');
    expect(ws.sentOfType('typing')).toEqual([
      { type: 'typing', payload: { conversation_id: 'c1', state: 'start' } },
    ]);
    for (let i = 0; i < 10; i++) {
      await jest.advanceTimersByTimeAsync(150); // a keystroke every 150 ms for 1.5 s
      client.typing('c1');
    }
    expect(typingSent(ws)).toEqual(['start']);
    await jest.advanceTimersByTimeAsync(600);
    client.typing('c1'); // 2.1 s after the first start: renewed
    expect(typingSent(ws)).toEqual(['start', 'start']);
    await jest.advanceTimersByTimeAsync(2999);
    expect(typingSent(ws)).toEqual(['start', 'start']);
    await jest.advanceTimersByTimeAsync(1);
    expect(typingSent(ws)).toEqual(['start', 'start', 'stop']);
    client.typing('c1'); // typing again after the stop starts at once
    expect(typingSent(ws)).toEqual(['start', 'start', 'stop', 'start']);
    client.stopTyping('c1');
    expect(typingSent(ws)).toEqual(['start', 'start', 'stop', 'start', 'stop']);
    await jest.advanceTimersByTimeAsync(10_000);
    expect(typingSent(ws)).toHaveLength(5);
    await client.close();
  });

  it('sends nothing while offline and starts again after a reconnect', async () => {
    const { client, ws } = await openClient({ typingIntervalMs: 2000 });
    ws.serverClose(1006);
    client.typing('c1');
    expect(typingSent(ws)).toEqual([]);
    await jest.advanceTimersByTimeAsync(1_000);
    const ws2 = FakeWebSocket.last;
    expect(ws2).not.toBe(ws);
    ws2.accept();
    client.typing('c1');
    expect(typingSent(ws2)).toEqual(['start']);
    await client.close();
  });
});

describe('typing events', () => {
  const record = (client: RelayClient) => {
    const seen: TypingEvent[] = [];
    client.on('typing', (e) => seen.push(e));
    return seen;
  };
  const typingFrame = (user: string, state: 'start' | 'stop', expires = 6000) => ({
    type: 'typing',
    payload: { conversation_id: 'c1', user_id: user, state, expires_in_ms: state === 'start' ? expires : 0 },
  });

  it('a start shows until it expires on its own; a renewal extends it without a second event', async () => {
    const { client, ws } = await openClient();
    const seen = record(client);
    ws.receive(typingFrame('bob', 'start', 6000));
    expect(seen).toEqual([{ conversationId: 'c1', userId: 'bob', typing: true }]);
    expect(client.typingUsers('c1')).toEqual(['bob']);
    await jest.advanceTimersByTimeAsync(4000);
    ws.receive(typingFrame('bob', 'start', 6000));
    await jest.advanceTimersByTimeAsync(5999);
    expect(client.typingUsers('c1')).toEqual(['bob']);
    expect(seen).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(client.typingUsers('c1')).toEqual([]);
    expect(seen.at(-1)).toEqual({ conversationId: 'c1', userId: 'bob', typing: false });
    await client.close();
  });

  it('a stop ends it at once; a stop for someone not typing is ignored', async () => {
    const { client, ws } = await openClient();
    const seen = record(client);
    ws.receive(typingFrame('ann', 'stop'));
    expect(seen).toEqual([]);
    ws.receive(typingFrame('ann', 'start'));
    ws.receive(typingFrame('ann', 'stop'));
    expect(seen.map((e) => e.typing)).toEqual([true, false]);
    expect(client.typingUsers('c1')).toEqual([]);
    await client.close();
  });
});

describe('subscribePresence()', () => {
  const snapshot = (online: string[]) => ({ type: 'presence', payload: { conversation_id: 'c1', online } });
  const change = (user: string, status: string) => ({
    type: 'presence',
    payload: { conversation_id: 'c1', user_id: user, status },
  });

  it('returns the live set: snapshot, then changes; restored after a reconnect with the missed differences', async () => {
    const { client, ws } = await openClient();
    const sub = client.subscribePresence('c1');
    expect(client.subscribePresence('c1')).toBe(sub);
    const [req] = ws.sentOfType('presence.subscribe');
    expect(req.payload).toEqual({ conversation_id: 'c1' });
    const changes: PresenceChange[] = [];
    sub.on('change', (c) => changes.push(c));
    ws.receive(snapshot(['ann', 'bob']));
    await sub.whenReady();
    expect([...sub.online]).toEqual(['ann', 'bob']);
    ws.receive(change('cy', 'online'));
    ws.receive(change('ann', 'offline'));
    expect([...sub.online].sort()).toEqual(['bob', 'cy']);
    expect(changes).toEqual([
      { conversationId: 'c1', userId: 'cy', status: 'online' },
      { conversationId: 'c1', userId: 'ann', status: 'offline' },
    ]);

    ws.serverClose(1006);
    await jest.advanceTimersByTimeAsync(1_000);
    const ws2 = FakeWebSocket.last;
    ws2.accept();
    await settle();
    expect(ws2.sentOfType('presence.subscribe').map((f) => f.payload)).toEqual([{ conversation_id: 'c1' }]);
    ws2.receive(snapshot(['bob', 'dee']));
    expect([...sub.online].sort()).toEqual(['bob', 'dee']);
    expect(changes.slice(2)).toEqual([
      { conversationId: 'c1', userId: 'cy', status: 'offline' },
      { conversationId: 'c1', userId: 'dee', status: 'online' },
    ]);

    sub.unsubscribe();
    expect(ws2.sentOfType('presence.unsubscribe').map((f) => f.payload)).toEqual([{ conversation_id: 'c1' }]);
    ws2.receive(change('eve', 'online'));
    expect(changes).toHaveLength(4);
    await client.close();
  });

  it('a refusal (forbidden) ends the subscription with an error; it is not restored', async () => {
    const { client, ws } = await openClient();
    const sub = client.subscribePresence('c1');
    const errors: string[] = [];
    sub.on('error', (e) => errors.push(e.code));
    const clientErrors: string[] = [];
    client.on('error', (e) => clientErrors.push(e.code));
    const [req] = ws.sentOfType('presence.subscribe');
    ws.refuse(req.msg_id!, 'forbidden');
    await expect(sub.whenReady()).rejects.toMatchObject({ code: 'forbidden' });
    expect(errors).toEqual(['forbidden']);
    expect(clientErrors).toEqual([]);
    expect(sub.subscribed).toBe(false);
    ws.serverClose(1006);
    await jest.advanceTimersByTimeAsync(1_000);
    FakeWebSocket.last.accept();
    expect(FakeWebSocket.last.sentOfType('presence.subscribe')).toEqual([]);
    await client.close();
  });

  it('a subscription made while offline is sent once the client is welcomed', async () => {
    const { client, ws } = await openClient();
    ws.serverClose(1006);
    const sub = client.subscribePresence('c1');
    expect(ws.sentOfType('presence.subscribe')).toEqual([]);
    await jest.advanceTimersByTimeAsync(1_000);
    FakeWebSocket.last.accept();
    expect(FakeWebSocket.last.sentOfType('presence.subscribe')).toHaveLength(1);
    FakeWebSocket.last.receive(snapshot(['u1']));
    expect(sub.ready).toBe(true);
    await client.close();
  });
});
