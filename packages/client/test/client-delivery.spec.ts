import { memoryStorage } from '../src/index';
import type { CursorStorage, Message, RelayClient, RelayError, ResetEvent } from '../src/index';
import { FakeWebSocket, fakeConnect, openClient, resetFakes, settle } from './fake-web-socket';

beforeEach(() => {
  jest.useFakeTimers();
  resetFakes();
});
afterEach(() => jest.useRealTimers());

function messages(client: RelayClient): Message[] {
  const seen: Message[] = [];
  client.on('message', (m) => seen.push(m));
  return seen;
}

function errors(client: RelayClient): RelayError[] {
  const seen: RelayError[] = [];
  client.on('error', (e) => seen.push(e));
  return seen;
}

/** A storage whose writes the test can see, optionally slow (each write resolves only when released). */
function spyStorage(initial?: string, slow = false) {
  const writes: string[] = [];
  const release: (() => void)[] = [];
  const storage: CursorStorage = {
    get: async () => initial,
    set: (c) => {
      writes.push(c);
      if (slow) return new Promise<void>((resolve) => release.push(resolve));
    },
  };
  return { storage, writes, release };
}

describe('delivery', () => {
  it('hands each message to the app once, in order, in camelCase', async () => {
    const { client, ws } = await openClient();
    const seen = messages(client);
    ws.deliver('E-1', 'm1', { text: 'a' }, 'conv');
    ws.deliver('E-2', 'm2');
    ws.deliver('E-2', 'm2'); // same cursor again
    ws.deliver('E-1', 'm1'); // an older one again
    ws.deliver('E-3', 'm1'); // same message, new cursor
    ws.deliver('E-4', 'm4');
    expect(seen.map((m) => m.id)).toEqual(['m1', 'm2', 'm4']);
    expect(seen[0]).toEqual({
      cursor: 'E-1',
      id: 'm1',
      conversationId: 'conv',
      from: 'u2',
      ts: 1,
      body: { text: 'a' },
    });
    expect(client.lastCursor).toBe('E-4');
  });

  it('resumes from the last delivered cursor and drops the replayed overlap', async () => {
    const { client, ws } = await openClient();
    const seen = messages(client);
    ws.deliver('E-1', 'm1');
    ws.deliver('E-2', 'm2');
    ws.serverClose(1006);
    await jest.advanceTimersByTimeAsync(50);
    const next = FakeWebSocket.last;
    next.open();
    expect(next.sent[0]).toEqual({ type: 'hello', payload: { last_msg_id: 'E-2' } });
    next.welcome();
    // A server may replay a little more than asked (e.g. a confirm lost in flight).
    next.deliver('E-1', 'm1');
    next.deliver('E-2', 'm2');
    next.deliver('E-3', 'm3');
    expect(seen.map((m) => m.cursor)).toEqual(['E-1', 'E-2', 'E-3']);
  });

  it('loads the cursor from storage for the first hello and stores every delivered cursor', async () => {
    const { storage, writes } = spyStorage('E-41');
    const client = fakeConnect({ storage });
    const seen = messages(client);
    await settle();
    const ws = FakeWebSocket.last;
    ws.open();
    expect(ws.sent[0]).toEqual({ type: 'hello', payload: { last_msg_id: 'E-41' } });
    ws.welcome();
    ws.deliver('E-41', 'm41'); // the stored cursor itself is not delivered again
    ws.deliver('E-42', 'm42');
    ws.deliver('E-43', 'm43');
    await settle();
    expect(seen.map((m) => m.id)).toEqual(['m42', 'm43']);
    expect(writes.at(-1)).toBe('E-43');
  });

  it('never runs two writes at once on a slow storage, and close() waits for the last one', async () => {
    const { storage, writes, release } = spyStorage(undefined, true);
    const { client, ws } = await openClient({ storage });
    for (let i = 1; i <= 5; i++) ws.deliver(`E-${i}`, `m${i}`);
    await settle();
    expect(writes).toEqual(['E-1']);
    const closed = jest.fn();
    void client.close().then(closed);
    release.shift()!();
    await settle();
    expect(writes).toEqual(['E-1', 'E-5']);
    expect(closed).not.toHaveBeenCalled();
    release.shift()!();
    await settle();
    expect(closed).toHaveBeenCalled();
  });

  it('connects as a fresh device, with an error event, when storage cannot be read', async () => {
    const client = fakeConnect({
      storage: { get: () => Promise.reject(new Error('EACCES')), set: () => undefined },
    });
    const errs = errors(client);
    await settle();
    FakeWebSocket.last.open();
    expect(FakeWebSocket.last.sent[0]).toEqual({ type: 'hello', payload: {} });
    expect(errs.map((e) => e.code)).toEqual(['storage_error']);
  });

  it('fires reset when the server could not resume (recovered: false)', async () => {
    const client = fakeConnect({ storage: memoryStorage('E-7') });
    const resets: ResetEvent[] = [];
    client.on('reset', (r) => resets.push(r));
    await settle();
    FakeWebSocket.last.accept({ recovered: true });
    expect(resets).toEqual([]);
    FakeWebSocket.last.serverClose(1006);
    await jest.advanceTimersByTimeAsync(50);
    FakeWebSocket.last.accept({ recovered: false });
    expect(resets).toEqual([{ cursor: 'E-7' }]);
    expect(client.session?.recovered).toBe(false);
  });

  describe('welcome.cursor after recovered: false', () => {
    it('adopts it before the replay: stored, used by the next hello, and the loss is reported once', async () => {
      const { storage, writes } = spyStorage('E1-000000000007');
      const client = fakeConnect({ storage });
      const resets: ResetEvent[] = [];
      client.on('reset', (r) => resets.push(r));
      const storedWhenHandled: string[][] = [];
      client.on('message', () => storedWhenHandled.push([...writes]));
      await settle();
      const ws = FakeWebSocket.last;
      ws.open();
      expect(ws.sent[0]).toEqual({ type: 'hello', payload: { last_msg_id: 'E1-000000000007' } });
      ws.welcome({ recovered: false, cursor: 'E2-000000000000' });
      expect(client.lastCursor).toBe('E2-000000000000');
      expect(writes).toEqual(['E2-000000000000']);
      expect(resets).toEqual([{ cursor: 'E1-000000000007' }]); // the cursor that lost messages
      ws.deliver('E2-000000000001', 'm1'); // the replay
      expect(storedWhenHandled).toEqual([['E2-000000000000']]);
      await jest.advanceTimersByTimeAsync(5000);
      expect(ws.sentOfType('confirm')).toEqual([{ type: 'confirm', msg_id: 'E2-000000000001' }]);

      // No newer message before the next drop: the next hello still resumes from the new position.
      ws.serverClose(1006);
      await jest.advanceTimersByTimeAsync(50);
      const next = FakeWebSocket.last;
      next.open();
      expect(next.sent[0]).toEqual({ type: 'hello', payload: { last_msg_id: 'E2-000000000001' } });
      next.welcome({ recovered: true, cursor: 'E2-000000000001' });
      expect(resets).toHaveLength(1);
    });

    it('is what the next hello carries when no message arrived in between', async () => {
      const client = fakeConnect({ storage: memoryStorage('E-000000000007') });
      const resets: ResetEvent[] = [];
      client.on('reset', (r) => resets.push(r));
      await settle();
      FakeWebSocket.last.accept({ recovered: false, cursor: 'E-000000000040' });
      await jest.advanceTimersByTimeAsync(5000);
      expect(FakeWebSocket.last.sentOfType('confirm')).toEqual([]); // the server's own position
      FakeWebSocket.last.serverClose(1006);
      await jest.advanceTimersByTimeAsync(50);
      FakeWebSocket.last.open();
      expect(FakeWebSocket.last.sent[0]).toEqual({
        type: 'hello',
        payload: { last_msg_id: 'E-000000000040' },
      });
      FakeWebSocket.last.welcome({ recovered: true, cursor: 'E-000000000040' });
      expect(resets).toEqual([{ cursor: 'E-000000000007' }]);
    });

    it('delivers what follows the new position once, even where a reset store reuses cursor strings', async () => {
      const { client, ws } = await openClient();
      const seen = messages(client);
      ws.deliver('E-1', 'm1');
      ws.deliver('E-2', 'm2');
      ws.deliver('E-3', 'm3');
      ws.serverClose(1006);
      await jest.advanceTimersByTimeAsync(50);
      const next = FakeWebSocket.last;
      next.open();
      expect(next.sent[0]).toEqual({ type: 'hello', payload: { last_msg_id: 'E-3' } });
      // The store was rolled back: it never issued E-3, and numbers its deliveries from 1 again.
      next.welcome({ recovered: false, cursor: 'E-0' });
      next.deliver('E-1', 'm1'); // a message the app already has, still retained: not again
      next.deliver('E-2', 'n2'); // new, under a cursor string seen before the reset
      next.deliver('E-2', 'n2'); // a duplicate on the new position: once
      next.deliver('E-3', 'n3');
      expect(seen.map((m) => `${m.cursor}:${m.id}`)).toEqual([
        'E-1:m1',
        'E-2:m2',
        'E-3:m3',
        'E-2:n2',
        'E-3:n3',
      ]);
      expect(client.lastCursor).toBe('E-3');
    });

    it('keeps working with an older server that sends no cursor (the loss may be reported again)', async () => {
      const { storage, writes } = spyStorage('E-7');
      const client = fakeConnect({ storage });
      const resets: ResetEvent[] = [];
      client.on('reset', (r) => resets.push(r));
      await settle();
      FakeWebSocket.last.accept({ recovered: false });
      expect(client.lastCursor).toBe('E-7');
      expect(writes).toEqual([]);
      FakeWebSocket.last.serverClose(1006);
      await jest.advanceTimersByTimeAsync(50);
      FakeWebSocket.last.open();
      expect(FakeWebSocket.last.sent[0]).toEqual({ type: 'hello', payload: { last_msg_id: 'E-7' } });
      FakeWebSocket.last.welcome({ recovered: false });
      expect(resets).toEqual([{ cursor: 'E-7' }, { cursor: 'E-7' }]);
    });

    it('is ignored when the server could resume (recovered: true)', async () => {
      const client = fakeConnect({ storage: memoryStorage('E-7') });
      await settle();
      FakeWebSocket.last.accept({ recovered: true, cursor: 'E-9' });
      expect(client.lastCursor).toBe('E-7');
    });
  });

  it('counts a message as delivered even if a listener throws, and reports the exception', async () => {
    const { client, ws } = await openClient();
    const errs = errors(client);
    client.on('message', () => {
      throw new Error('boom');
    });
    const seen = messages(client);
    ws.deliver('E-1', 'm1');
    ws.deliver('E-1', 'm1');
    expect(seen).toHaveLength(1); // the other listener still ran, once
    expect(errs.map((e) => e.code)).toEqual(['handler_error']);
    expect(client.lastCursor).toBe('E-1');
  });

  it('reports malformed frames and server errors that belong to no send', async () => {
    const { client, ws } = await openClient();
    const errs = errors(client);
    ws.receive('not json');
    ws.receive({ type: 'error', payload: { code: 'rate_limited', message: 'slow down' } });
    expect(errs.map((e) => [e.code, e.message])).toEqual([
      ['bad_frame', expect.stringContaining('not valid JSON')],
      ['rate_limited', 'slow down'],
    ]);
  });
});

describe('confirm batching', () => {
  it('sends at most one confirm per interval, carrying the latest cursor', async () => {
    const { ws } = await openClient({ confirmIntervalMs: 1000 });
    for (let i = 1; i <= 5; i++) ws.deliver(`E-${i}`, `m${i}`);
    await jest.advanceTimersByTimeAsync(999);
    expect(ws.sentOfType('confirm')).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    expect(ws.sentOfType('confirm')).toEqual([{ type: 'confirm', msg_id: 'E-5' }]);

    ws.deliver('E-6', 'm6');
    await jest.advanceTimersByTimeAsync(200);
    ws.deliver('E-7', 'm7');
    await jest.advanceTimersByTimeAsync(800);
    expect(ws.sentOfType('confirm')).toEqual([
      { type: 'confirm', msg_id: 'E-5' },
      { type: 'confirm', msg_id: 'E-7' },
    ]);
    // Nothing new: nothing sent.
    await jest.advanceTimersByTimeAsync(5000);
    expect(ws.sentOfType('confirm')).toHaveLength(2);
  });

  it('does not confirm duplicates or the cursor the hello already carried', async () => {
    const client = fakeConnect({ storage: memoryStorage('E-3') });
    await settle();
    const ws = FakeWebSocket.last;
    ws.accept();
    ws.deliver('E-3', 'm3');
    await jest.advanceTimersByTimeAsync(5000);
    expect(ws.sentOfType('confirm')).toEqual([]);
    expect(client.lastCursor).toBe('E-3');
  });

  it('confirms the latest cursor immediately on close()', async () => {
    const { client, ws } = await openClient();
    ws.deliver('E-1', 'm1');
    ws.deliver('E-2', 'm2');
    await client.close();
    expect(ws.sentOfType('confirm')).toEqual([{ type: 'confirm', msg_id: 'E-2' }]);
    expect(ws.closedWith).toEqual({ code: 1000, reason: 'client closed' });
  });

  it('leaves a confirm that fell due while offline to the next hello', async () => {
    const { ws } = await openClient();
    ws.deliver('E-1', 'm1');
    ws.serverClose(1006);
    await jest.advanceTimersByTimeAsync(1000);
    expect(ws.sentOfType('confirm')).toEqual([]);
    const next = FakeWebSocket.last;
    next.accept();
    expect(next.sent[0]).toEqual({ type: 'hello', payload: { last_msg_id: 'E-1' } });
    await jest.advanceTimersByTimeAsync(5000);
    expect(next.sentOfType('confirm')).toEqual([]);
  });
});
