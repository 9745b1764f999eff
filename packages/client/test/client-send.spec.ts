import { RelayError } from '../src/index';
import { FakeWebSocket, fakeConnect, openClient, resetFakes, settle } from './fake-web-socket';

beforeEach(() => {
  jest.useFakeTimers();
  resetFakes();
});
afterEach(() => jest.useRealTimers());

const refsSent = (ws: FakeWebSocket) => ws.sentOfType('send').map((f) => f.msg_id);

describe('send', () => {
  it('sends one frame and resolves with the ack', async () => {
    const { client, ws } = await openClient();
    const sending = client.send('c1', { text: 'hi' });
    const [frame] = ws.sentOfType('send');
    expect(frame).toEqual({
      type: 'send',
      msg_id: expect.any(String),
      payload: { conversation_id: 'c1', body: { text: 'hi' } },
    });
    expect(frame.msg_id!.length).toBeLessThanOrEqual(64);
    ws.ack(frame.msg_id!, 'M1');
    await expect(sending).resolves.toEqual({ id: 'M1', ts: 42, conversationId: 'c1', ref: frame.msg_id });
    expect(client.pendingSends).toBe(0);
  });

  it('generates a different ref per message', async () => {
    const { client, ws } = await openClient();
    void client.send('c1', 1);
    void client.send('c1', 2);
    const [a, b] = refsSent(ws);
    expect(a).not.toBe(b);
  });

  it('queues sends until welcome, then flushes them in order', async () => {
    const client = fakeConnect();
    const first = client.send('c1', 'one');
    const second = client.send('c1', 'two');
    await settle();
    const ws = FakeWebSocket.last;
    ws.open();
    expect(ws.sentOfType('send')).toEqual([]); // hello only: the server wants it first
    ws.welcome();
    expect(ws.sentOfType('send').map((f) => f.payload!.body)).toEqual(['one', 'two']);
    const [r1, r2] = refsSent(ws);
    ws.ack(r1!);
    ws.ack(r2!);
    await expect(Promise.all([first, second])).resolves.toHaveLength(2);
  });

  it('re-sends every unacked send after each new welcome with the same ref, and resolves once', async () => {
    const { client, ws } = await openClient();
    const sending = client.send('c1', 'hello');
    const [ref] = refsSent(ws);
    ws.serverClose(1006); // lost before the ack

    await jest.advanceTimersByTimeAsync(50);
    const second = FakeWebSocket.last;
    second.accept();
    expect(refsSent(second)).toEqual([ref]);
    second.serverClose(1012);

    await settle();
    const third = FakeWebSocket.last;
    third.accept();
    expect(refsSent(third)).toEqual([ref]);
    third.ack(ref!, 'M1');
    third.ack(ref!, 'M1'); // a duplicate ack is harmless
    await expect(sending).resolves.toMatchObject({ id: 'M1', ref });
    expect(client.pendingSends).toBe(0);
  });

  it('freezes the body at send() time, so a retry carries the same content', async () => {
    const { client, ws } = await openClient();
    const body = { n: 1 };
    void client.send('c1', body);
    body.n = 2;
    ws.serverClose(1006);
    await jest.advanceTimersByTimeAsync(50);
    FakeWebSocket.last.accept();
    expect(FakeWebSocket.last.sentOfType('send')[0].payload!.body).toEqual({ n: 1 });
  });

  it('rejects with the server error code for that ref', async () => {
    const { client, ws } = await openClient();
    const sending = client.send('secret', 'x');
    const [ref] = refsSent(ws);
    ws.receive({ type: 'error', msg_id: ref, payload: { code: 'forbidden', message: 'not a member' } });
    const err = await sending.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RelayError);
    expect(err).toMatchObject({ code: 'forbidden', message: 'not a member', ref });
  });

  it('retries with the same ref after back-off when the server is unavailable', async () => {
    const { client, ws } = await openClient();
    const sending = client.send('c1', 'x');
    const [ref] = refsSent(ws);
    ws.receive({ type: 'error', msg_id: ref, payload: { code: 'unavailable', message: 'bus down' } });
    await jest.advanceTimersByTimeAsync(49);
    expect(refsSent(ws)).toEqual([ref]);
    await jest.advanceTimersByTimeAsync(1);
    expect(refsSent(ws)).toEqual([ref, ref]);
    ws.receive({ type: 'error', msg_id: ref, payload: { code: 'unavailable', message: 'bus down' } });
    await jest.advanceTimersByTimeAsync(100); // second delay: 0.5 * 200
    expect(refsSent(ws)).toEqual([ref, ref, ref]);
    ws.ack(ref!);
    await expect(sending).resolves.toMatchObject({ ref });
  });

  it('gives up with `timeout` after sendTimeoutMs in total, even while retrying `unavailable`', async () => {
    const { client, ws } = await openClient({ sendTimeoutMs: 5000 });
    const sending = client.send('c1', 'x');
    const outcome = sending.catch((e: unknown) => e);
    const [ref] = refsSent(ws);
    for (let t = 0; t < 5000; t += 100) {
      ws.receive({ type: 'error', msg_id: ref, payload: { code: 'unavailable', message: '' } });
      await jest.advanceTimersByTimeAsync(100);
    }
    expect(await outcome).toMatchObject({ code: 'timeout', ref });
    expect(client.pendingSends).toBe(0);
    // A late ack for it is ignored.
    ws.ack(ref!);
  });

  it('a timed-out send can be retried with the same ref from the error', async () => {
    const { client, ws } = await openClient({ sendTimeoutMs: 1000 });
    const outcome = client.send('c1', 'x').then(
      () => undefined,
      (e: RelayError) => e,
    );
    await jest.advanceTimersByTimeAsync(1000);
    const err = (await outcome)!;
    expect(err.code).toBe('timeout');
    void client.send('c1', 'x', { ref: err.ref });
    expect(refsSent(ws)).toEqual([err.ref, err.ref]);
  });

  it('bounds the queue: beyond maxQueue, send rejects with queue_full', async () => {
    const client = fakeConnect({ maxQueue: 2 });
    void client.send('c1', 1).catch(() => undefined);
    void client.send('c1', 2).catch(() => undefined);
    await expect(client.send('c1', 3)).rejects.toMatchObject({ code: 'queue_full' });
    await settle();
    FakeWebSocket.last.accept();
    expect(FakeWebSocket.last.sentOfType('send')).toHaveLength(2);
  });

  it('close() rejects pending sends with `closed`; later sends fail at once', async () => {
    const client = fakeConnect();
    const pending = client.send('c1', 'x');
    await client.close();
    await expect(pending).rejects.toMatchObject({ code: 'closed' });
    await expect(client.send('c1', 'y')).rejects.toMatchObject({ code: 'closed' });
    expect(client.state).toBe('closed');
  });

  it.each([
    ['an undefined body', 'c1', undefined],
    ['a function body', 'c1', () => 1],
    ['a BigInt body', 'c1', 1n],
    ['an empty conversation id', '', 'x'],
  ])('rejects %s with invalid_argument without sending', async (_name, conversationId, body) => {
    const { client, ws } = await openClient();
    await expect(client.send(conversationId, body)).rejects.toMatchObject({ code: 'invalid_argument' });
    expect(ws.sentOfType('send')).toEqual([]);
  });

  it('rejects a ref that is too long or already pending', async () => {
    const { client } = await openClient();
    await expect(client.send('c1', 'x', { ref: 'r'.repeat(65) })).rejects.toMatchObject({
      code: 'invalid_argument',
    });
    void client.send('c1', 'x', { ref: 'r1' });
    await expect(client.send('c1', 'x', { ref: 'r1' })).rejects.toMatchObject({ code: 'invalid_argument' });
  });

  it('rejects a frame above maxFrameBytes (counted in UTF-8) without sending it', async () => {
    const { client, ws } = await openClient({ maxFrameBytes: 200 });
    await expect(client.send('c1', 'é'.repeat(80))).rejects.toMatchObject({ code: 'too_large' }); // 160 bytes of body
    void client.send('c1', 'e'.repeat(80));
    expect(ws.sentOfType('send')).toHaveLength(1);
  });

  it('after a 1009 close, fails the largest in-flight send and re-sends the others', async () => {
    const { client, ws } = await openClient();
    const small = client.send('c1', 'x');
    const big = client.send('c1', 'y'.repeat(5000));
    const [smallRef, bigRef] = refsSent(ws);
    ws.serverClose(1009);
    await expect(big).rejects.toMatchObject({ code: 'too_large', ref: bigRef });
    await jest.advanceTimersByTimeAsync(50);
    FakeWebSocket.last.accept();
    expect(refsSent(FakeWebSocket.last)).toEqual([smallRef]);
    FakeWebSocket.last.ack(smallRef!);
    await expect(small).resolves.toMatchObject({ ref: smallRef });
  });
});
