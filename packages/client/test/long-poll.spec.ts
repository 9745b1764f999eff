import { LongPollSocket, pollEndpoint } from '../src/long-poll-socket';
import type { FetchLike } from '../src/long-poll-socket';
import { TransportChoice, wsBlocked } from '../src/transport';

/** A scripted server: each request is recorded and answered by `answer` (or held until `release`). */
class FakeFetch {
  readonly requests: { method: string; url: string; headers: Record<string, string>; body?: string }[] = [];
  private held: { method: string; answer: (r: { status: number; body: unknown }) => void }[] = [];
  constructor(
    private readonly answer: (method: string, url: string) => { status: number; body: unknown } | 'hold',
  ) {}

  readonly fetch: FetchLike = (url, init) => {
    this.requests.push({ method: init.method, url, headers: init.headers, body: init.body });
    const a = this.answer(init.method, url);
    const reply = (r: { status: number; body: unknown }) => ({
      status: r.status,
      text: async () => JSON.stringify(r.body),
    });
    if (a !== 'hold') return Promise.resolve(reply(a));
    return new Promise((resolve, reject) => {
      init.signal?.addEventListener('abort', () => reject(new Error('aborted')));
      this.held.push({ method: init.method, answer: (r) => resolve(reply(r)) });
    });
  };

  /** Answers the oldest held request of this method. */
  release(method: string, status: number, body: unknown): void {
    const i = this.held.findIndex((h) => h.method === method);
    this.held.splice(i, 1)[0].answer({ status, body });
  }
}

const welcome = {
  type: 'welcome',
  payload: { user_id: 'u', node_id: 'n', heartbeat_ms: 25000, recovered: true, cursor: 'e-000000000003' },
};
const message = (seq: number) => ({
  type: 'message',
  msg_id: `e-00000000000${seq}`,
  payload: { id: `m${seq}`, conversation_id: 'c', from: 'x', ts: 1, body: seq },
});
const tick = () => new Promise((r) => setTimeout(r, 5));

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await tick();
  expect(cond()).toBe(true);
}

describe('pollEndpoint', () => {
  it('derives the HTTP address from the WebSocket url and moves a token to a header', () => {
    expect(pollEndpoint('ws://h:1/ws?user_id=u')).toEqual({
      base: 'http://h:1/v1/poll',
      query: 'user_id=u',
      token: undefined,
    });
    expect(pollEndpoint('wss://h/relay/ws?token=T')).toEqual({
      base: 'https://h/relay/v1/poll',
      query: '',
      token: 'T',
    });
  });
});

describe('LongPollSocket', () => {
  it('opens with the hello cursor, polls from the welcome cursor on, posts in order, one at a time', async () => {
    let polls = 0;
    const server = new FakeFetch((method, url) => {
      if (url.includes('/open')) return { status: 200, body: { sid: 's1', frames: [welcome] } };
      if (method === 'GET') return ++polls === 1 ? { status: 200, body: [message(4), message(5)] } : 'hold';
      return 'hold';
    });
    const ws = new LongPollSocket('wss://h/ws?token=T', server.fetch);
    const got: unknown[] = [];
    ws.onmessage = (e) => got.push(JSON.parse(String(e.data)));
    await new Promise<void>((r) => (ws.onopen = () => r()));
    ws.send(JSON.stringify({ type: 'hello', payload: { last_msg_id: 'e-000000000002' } }));
    await until(() => got.length === 3);
    expect(got).toEqual([welcome, message(4), message(5)]);
    const open = server.requests[0];
    expect([open.method, open.url, open.headers.authorization, open.body]).toEqual([
      'POST',
      'https://h/v1/poll/open',
      'Bearer T',
      '{"last_msg_id":"e-000000000002"}',
    ]);
    const gets = server.requests.filter((r) => r.method === 'GET').map((r) => r.url);
    expect(gets).toEqual([
      'https://h/v1/poll/s1?cursor=e-000000000003',
      'https://h/v1/poll/s1?cursor=e-000000000005',
    ]);

    ws.send('{"type":"send","msg_id":"a"}');
    ws.send('{"type":"send","msg_id":"b"}');
    ws.send('{"type":"send","msg_id":"c"}');
    await until(() => server.requests.filter((r) => r.method === 'POST').length === 2);
    const posts = () => server.requests.filter((r) => r.method === 'POST' && !r.url.includes('/open'));
    expect(posts().map((r) => r.body)).toEqual(['[{"type":"send","msg_id":"a"}]']);
    server.release('POST', 200, [{ type: 'ack', msg_id: 'x', payload: { ref: 'a' } }]);
    await until(() => posts().length === 2);
    expect(posts()[1].body).toBe('[{"type":"send","msg_id":"b"},{"type":"send","msg_id":"c"}]');
    expect(got.at(-1)).toEqual({ type: 'ack', msg_id: 'x', payload: { ref: 'a' } });

    ws.close(1000, 'bye');
    expect(ws.readyState).toBe(3);
    const del = server.requests.at(-1)!;
    expect([del.method, del.url, del.headers.authorization]).toEqual([
      'DELETE',
      'https://h/v1/poll/s1',
      'Bearer T',
    ]);
  });

  it('closes with the code the loop understands for each HTTP error', async () => {
    for (const [status, code] of [
      [401, 4001],
      [410, 1006],
      [404, 1006],
      [503, 1012],
      [429, 4029],
      [413, 1009],
    ] as const) {
      const server = new FakeFetch(() => ({ status, body: { code: 'x', message: 'why' } }));
      const ws = new LongPollSocket('ws://h/ws?user_id=u', server.fetch);
      const closed = new Promise<{ code: number; reason: string }>((r) => (ws.onclose = r));
      const errors: string[] = [];
      ws.onerror = (e) => errors.push((e as { message: string }).message);
      ws.onopen = () => ws.send('{"type":"hello","payload":{}}');
      expect(await closed).toEqual({ code, reason: 'why' });
      expect(errors).toEqual([`Unexpected server response: ${status} (why)`]);
      expect(server.requests[0].url).toBe('http://h/v1/poll/open?user_id=u');
    }
  });
});

describe('TransportChoice', () => {
  it('falls back after N blocked WebSocket attempts in a row, not for other failures, and goes back', () => {
    const choice = new TransportChoice(['websocket', 'longpoll'], 2);
    expect(choice.ended('websocket', false, true)).toBe(false);
    expect(choice.ended('websocket', true)).toBe(false); // a welcome resets the count
    expect(choice.ended('websocket', false, true)).toBe(false);
    expect(choice.ended('websocket', false, false)).toBe(false); // server's own close: not counted
    expect(choice.ended('websocket', false, true)).toBe(true);
    expect([choice.current, choice.shouldProbe]).toEqual(['longpoll', true]);
    choice.webSocketWorks();
    expect([choice.current, choice.shouldProbe]).toEqual(['websocket', false]);
  });

  it('never falls back when long polling is not allowed; starts on it when it is the only one', () => {
    const wsOnly = new TransportChoice(['websocket'], 1);
    expect(wsOnly.ended('websocket', false, true)).toBe(false);
    expect(wsOnly.current).toBe('websocket');
    const lpOnly = new TransportChoice(['longpoll'], 1);
    expect([lpOnly.current, lpOnly.shouldProbe]).toEqual(['longpoll', false]);
  });

  it('counts refused upgrades, early abnormal closes and timeouts; not server closes or unreachable hosts', () => {
    expect(wsBlocked(1006, 'Unexpected server response: 502', false)).toBe(true);
    expect(wsBlocked(1006, '', false)).toBe(true); // browsers say nothing
    expect(wsBlocked(4000, '', true)).toBe(true);
    expect(wsBlocked(1006, 'connect ECONNREFUSED 127.0.0.1:1', false)).toBe(false);
    expect(wsBlocked(4029, '', false)).toBe(false);
    expect(wsBlocked(1012, '', false)).toBe(false);
  });
});
