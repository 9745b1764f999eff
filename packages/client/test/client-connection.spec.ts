import type { ClientEvents, RelayClient } from '../src/index';
import { FakeWebSocket, fakeConnect, openClient, resetFakes, settle } from './fake-web-socket';

beforeEach(() => {
  jest.useFakeTimers();
  resetFakes();
});
afterEach(() => jest.useRealTimers());

function record<K extends keyof ClientEvents>(client: RelayClient, event: K): ClientEvents[K][] {
  const seen: ClientEvents[K][] = [];
  client.on(event, (value) => seen.push(value));
  return seen;
}

describe('handshake', () => {
  it('opens with the dev user id, sends hello first, and is open after welcome', async () => {
    const client = fakeConnect();
    const states = record(client, 'state');
    expect(client.state).toBe('connecting');
    await settle();
    const ws = FakeWebSocket.last;
    expect(ws.url).toBe('ws://relay.test/ws?user_id=u1');
    ws.open();
    expect(ws.sent).toEqual([{ type: 'hello', payload: {} }]);
    expect(client.state).toBe('connecting');
    ws.welcome({ heartbeat_ms: 5000, node_id: 'n7' });
    expect(client.state).toBe('open');
    expect(states).toEqual(['open']);
    expect(client.session).toEqual({ userId: 'u1', nodeId: 'n7', heartbeatMs: 5000, recovered: true });
  });

  it('prefers the token over the dev user id', async () => {
    fakeConnect({ token: 'jwt-1' });
    await settle();
    expect(FakeWebSocket.last.query.get('token')).toBe('jwt-1');
    expect(FakeWebSocket.last.query.has('user_id')).toBe(false);
  });

  it('whenOpen() resolves on welcome', async () => {
    const client = fakeConnect();
    const opened = jest.fn();
    void client.whenOpen().then(opened);
    await settle();
    FakeWebSocket.last.accept();
    await settle();
    expect(opened).toHaveBeenCalled();
  });

  it('gives up on an attempt that never reaches welcome', async () => {
    const client = fakeConnect({ connectTimeoutMs: 3000 });
    await settle();
    const first = FakeWebSocket.last;
    first.open(); // ...but the server never answers hello
    await jest.advanceTimersByTimeAsync(2999);
    expect(first.closedWith).toBeUndefined();
    await jest.advanceTimersByTimeAsync(1);
    expect(first.closedWith).toBeDefined();
    expect(client.state).toBe('reconnecting');
    await jest.advanceTimersByTimeAsync(50); // first back-off: random 0.5 * 100 ms
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it('validates its options synchronously', () => {
    expect(() => fakeConnect({ url: 'not a url' })).toThrow(TypeError);
    expect(() => fakeConnect({ userId: undefined })).toThrow(/token, getToken or userId/);
    expect(() => fakeConnect({ maxQueue: 0 })).toThrow(RangeError);
  });
});

describe('reconnect back-off', () => {
  it('waits random(0, min(cap, 100 ms * 2^n)) between failed attempts', async () => {
    const client = fakeConnect({ random: () => 0.5 });
    const disconnects = record(client, 'disconnect');
    await settle();
    const expected = [50, 100, 200, 400];
    for (const delay of expected) {
      const count = FakeWebSocket.instances.length;
      FakeWebSocket.last.serverClose(1006);
      await jest.advanceTimersByTimeAsync(delay - 1);
      expect(FakeWebSocket.instances).toHaveLength(count); // not yet
      await jest.advanceTimersByTimeAsync(1);
      expect(FakeWebSocket.instances).toHaveLength(count + 1);
    }
    expect(disconnects.map((d) => d.retryInMs)).toEqual(expected);
    expect(client.state).toBe('reconnecting');
  });

  it('resets the back-off after a connection stayed healthy, not before', async () => {
    const client = fakeConnect({ healthyAfterMs: 10_000 });
    const disconnects = record(client, 'disconnect');
    await settle();
    const failAndWait = async () => {
      FakeWebSocket.last.serverClose(1006);
      await jest.advanceTimersByTimeAsync(disconnects.at(-1)!.retryInMs!);
    };
    await failAndWait();
    await failAndWait();
    await failAndWait();
    // Welcomed but dropped after 9 s: still backing off.
    FakeWebSocket.last.accept();
    await jest.advanceTimersByTimeAsync(9_000);
    await failAndWait();
    // Welcomed and up for 10 s: the next failure starts again from the base.
    FakeWebSocket.last.accept();
    await jest.advanceTimersByTimeAsync(10_000);
    FakeWebSocket.last.serverClose(1006);
    expect(disconnects.map((d) => d.retryInMs)).toEqual([50, 100, 200, 400, 50]);
    expect(client.state).toBe('reconnecting');
  });

  it('reconnects at once when the node drains (1012), but backs off if the next attempt drains too', async () => {
    const { client, ws } = await openClient();
    const disconnects = record(client, 'disconnect');
    ws.serverClose(1012, 'draining');
    expect(disconnects[0]).toEqual({ code: 1012, reason: 'draining', retryInMs: 0 });
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(2);
    // That node drains as well before welcome: no tight loop.
    FakeWebSocket.last.open();
    FakeWebSocket.last.serverClose(1012);
    expect(disconnects[1].retryInMs).toBe(50);
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(2);
    await jest.advanceTimersByTimeAsync(50);
    expect(FakeWebSocket.instances).toHaveLength(3);
    // After a welcome, a later drain is immediate again.
    FakeWebSocket.last.accept();
    FakeWebSocket.last.serverClose(1012);
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(4);
  });

  it('close() stops reconnecting', async () => {
    const client = fakeConnect();
    await settle();
    FakeWebSocket.last.serverClose(1006);
    await client.close();
    await jest.advanceTimersByTimeAsync(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(client.state).toBe('closed');
  });
});

describe('authentication', () => {
  it('after 4001, does not reconnect until getToken yields a new token', async () => {
    const tokens = ['t1', 't1', 't1', 't2'];
    const getToken = jest.fn(async () => tokens.shift()!);
    const client = fakeConnect({ getToken, userId: undefined });
    const errors = record(client, 'error');
    await settle();
    expect(FakeWebSocket.last.query.get('token')).toBe('t1');
    FakeWebSocket.last.open();
    FakeWebSocket.last.serverClose(4001, 'token expired');
    expect(errors.map((e) => e.code)).toEqual(['unauthorized']);

    // getToken returns the refused token twice: each time, back off and ask again, no socket.
    await jest.advanceTimersByTimeAsync(50);
    expect(getToken).toHaveBeenCalledTimes(2);
    await jest.advanceTimersByTimeAsync(100);
    expect(getToken).toHaveBeenCalledTimes(3);
    expect(FakeWebSocket.instances).toHaveLength(1);

    await jest.advanceTimersByTimeAsync(200);
    expect(getToken).toHaveBeenCalledTimes(4);
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(FakeWebSocket.last.query.get('token')).toBe('t2');
    expect(client.state).toBe('reconnecting');
  });

  it('without getToken, 4001 is final: closed, with an unauthorized error, and pending sends rejected', async () => {
    const { client, ws } = await openClient({ token: 'static' });
    const errors = record(client, 'error');
    ws.serverClose(1006); // drop; a send queues meanwhile
    const sending = client.send('c1', 'hi');
    await jest.advanceTimersByTimeAsync(50);
    FakeWebSocket.last.open();
    FakeWebSocket.last.serverClose(4001);
    expect(client.state).toBe('closed');
    expect(errors.map((e) => e.code)).toEqual(['unauthorized']);
    await expect(sending).rejects.toMatchObject({ code: 'unauthorized' });
    await jest.advanceTimersByTimeAsync(60_000);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it('a static token refused by accept-and-close 4001 (how the server answers a browser) is final on the first attempt', async () => {
    const client = fakeConnect({ token: 'static', userId: undefined });
    const errors = record(client, 'error');
    const disconnects = record(client, 'disconnect');
    await settle();
    FakeWebSocket.last.open(); // the upgrade was accepted...
    FakeWebSocket.last.serverClose(4001, 'unauthorized: token expired'); // ...and closed at once
    expect(client.state).toBe('closed');
    expect(errors.map((e) => e.code)).toEqual(['unauthorized']);
    expect(disconnects).toEqual([{ code: 4001, reason: 'unauthorized: token expired' }]);
    await jest.advanceTimersByTimeAsync(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
  });

  it('a failure before open (possibly an HTTP 401) makes it ask getToken again before the next attempt', async () => {
    const getToken = jest.fn().mockResolvedValueOnce('old').mockResolvedValue('fresh');
    fakeConnect({ getToken });
    await settle();
    FakeWebSocket.last.failBeforeOpen(); // a browser: no detail, close 1006
    await jest.advanceTimersByTimeAsync(50);
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(FakeWebSocket.last.query.get('token')).toBe('fresh');
  });

  it('recognises the HTTP 401 that ws reports and treats it like 4001', async () => {
    const client = fakeConnect({ token: 'expired', userId: undefined });
    await settle();
    FakeWebSocket.last.failBeforeOpen('Unexpected server response: 401');
    expect(client.state).toBe('closed');
  });

  it('a failure before open that is not a 401 is retried with the same static token', async () => {
    const client = fakeConnect({ token: 'static' });
    await settle();
    FakeWebSocket.last.failBeforeOpen('connect ECONNREFUSED');
    await jest.advanceTimersByTimeAsync(50);
    expect(client.state).toBe('reconnecting');
    expect(FakeWebSocket.last.query.get('token')).toBe('static');
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it('reports a failing getToken and keeps trying', async () => {
    const getToken = jest.fn().mockRejectedValueOnce(new Error('offline')).mockResolvedValue('t');
    const client = fakeConnect({ getToken });
    const errors = record(client, 'error');
    await settle();
    expect(errors.map((e) => e.code)).toEqual(['token_error']);
    expect(FakeWebSocket.instances).toHaveLength(0);
    await jest.advanceTimersByTimeAsync(50);
    expect(FakeWebSocket.instances).toHaveLength(1);
  });
});

describe('heartbeat', () => {
  it('pings every heartbeat_ms', async () => {
    const { ws } = await openClient();
    ws.sent.length = 0;
    for (let i = 0; i < 3; i++) {
      await jest.advanceTimersByTimeAsync(24_999);
      expect(ws.sentOfType('ping')).toHaveLength(i);
      await jest.advanceTimersByTimeAsync(1);
      expect(ws.sentOfType('ping')).toHaveLength(i + 1);
      ws.receive({ type: 'pong' });
    }
  });

  it('drops a connection that received nothing for 2 x heartbeat_ms, then reconnects', async () => {
    const client = fakeConnect();
    await settle();
    const ws = FakeWebSocket.last;
    ws.accept({ heartbeat_ms: 1000 });
    await jest.advanceTimersByTimeAsync(1999);
    expect(ws.closedWith).toBeUndefined();
    await jest.advanceTimersByTimeAsync(1);
    // Closed by us, without waiting for a close event that a dead network never delivers.
    expect(ws.closedWith).toEqual({ code: 4000, reason: 'heartbeat timeout' });
    expect(client.state).toBe('reconnecting');
    await jest.advanceTimersByTimeAsync(50);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it('any inbound frame keeps the connection alive', async () => {
    const client = fakeConnect();
    await settle();
    const ws = FakeWebSocket.last;
    ws.accept({ heartbeat_ms: 1000 });
    for (let i = 0; i < 10; i++) {
      await jest.advanceTimersByTimeAsync(1500);
      if (i % 2) ws.receive({ type: 'pong' });
      else ws.deliver(`E-${i}`, `m${i}`);
    }
    expect(ws.closedWith).toBeUndefined();
    expect(client.state).toBe('open');
  });

  it('ignores events from a socket it has abandoned', async () => {
    const { client, ws } = await openClient();
    ws.serverClose(1006);
    await jest.advanceTimersByTimeAsync(50);
    const states = record(client, 'state');
    ws.serverClose(1006); // a late duplicate from the old socket
    ws.deliver('E-9', 'm9');
    expect(states).toEqual([]);
    expect(client.lastCursor).toBeUndefined();
  });
});
