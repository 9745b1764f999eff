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

/** Fails attempts (random 0.5: delays 50, 100, 200...) until the pending back-off is `delay` ms. */
async function failUntilDelay(disconnects: ClientEvents['disconnect'][], delay: number): Promise<void> {
  for (;;) {
    FakeWebSocket.last.serverClose(1006);
    const retry = disconnects.at(-1)!.retryInMs!;
    if (retry >= delay) return;
    await jest.advanceTimersByTimeAsync(retry);
  }
}

describe('reconnectNow()', () => {
  it('cancels a pending back-off and attempts at once; the cancelled retry never fires', async () => {
    const client = fakeConnect();
    const disconnects = record(client, 'disconnect');
    await settle();
    await failUntilDelay(disconnects, 400);
    const count = FakeWebSocket.instances.length;
    client.reconnectNow();
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(count + 1);
    FakeWebSocket.last.accept();
    expect(client.state).toBe('open');
    await jest.advanceTimersByTimeAsync(1_000);
    expect(FakeWebSocket.instances).toHaveLength(count + 1);
  });

  it('is a no-op while open, while an attempt is under way, and after close()', async () => {
    const client = fakeConnect();
    await settle();
    client.reconnectNow(); // the first attempt's socket is still connecting
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(1);
    FakeWebSocket.last.accept();
    client.reconnectNow();
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(FakeWebSocket.last.closedWith).toBeUndefined();
    FakeWebSocket.last.serverClose(1006);
    await client.close();
    client.reconnectNow();
    await jest.advanceTimersByTimeAsync(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
  });
});

/** A fake browser: `online` on globalThis and a document with visibilityState; restored by the returned function. */
function fakeBrowser() {
  type Listener = () => void;
  type Target = {
    addEventListener?: (type: string, l: Listener) => void;
    removeEventListener?: (type: string, l: Listener) => void;
  };
  const g = globalThis as unknown as Target & { document?: unknown };
  const saved = { add: g.addEventListener, remove: g.removeEventListener, document: g.document };
  const win = new EventTarget();
  const doc = Object.assign(new EventTarget(), { visibilityState: 'hidden' });
  const added = jest.fn((type: string, l: Listener) => win.addEventListener(type, l));
  const removed = jest.fn((type: string, l: Listener) => win.removeEventListener(type, l));
  g.addEventListener = added;
  g.removeEventListener = removed;
  g.document = doc;
  const restore = () => {
    for (const [key, value] of [
      ['addEventListener', saved.add],
      ['removeEventListener', saved.remove],
      ['document', saved.document],
    ] as const) {
      if (value === undefined) delete (g as Record<string, unknown>)[key];
      else (g as Record<string, unknown>)[key] = value;
    }
  };
  return {
    online: () => win.dispatchEvent(new Event('online')),
    visibility: (state: 'visible' | 'hidden') => {
      doc.visibilityState = state;
      doc.dispatchEvent(new Event('visibilitychange'));
    },
    added,
    removed,
    restore,
  };
}

describe('browser wake signals', () => {
  let browser: ReturnType<typeof fakeBrowser>;
  beforeEach(() => (browser = fakeBrowser()));
  afterEach(() => browser.restore());

  it('reconnects at once on `online`', async () => {
    const client = fakeConnect();
    const disconnects = record(client, 'disconnect');
    await settle();
    await failUntilDelay(disconnects, 400);
    const count = FakeWebSocket.instances.length;
    browser.online();
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(count + 1);
    await client.close();
  });

  it('reconnects at once when the tab becomes visible, not when it is hidden', async () => {
    const client = fakeConnect();
    const disconnects = record(client, 'disconnect');
    await settle();
    await failUntilDelay(disconnects, 400);
    const count = FakeWebSocket.instances.length;
    browser.visibility('hidden');
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(count);
    browser.visibility('visible');
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(count + 1);
    await client.close();
  });

  it('ignores the signals while open, and removes its listeners on close()', async () => {
    const { client } = await openClient();
    browser.online();
    browser.visibility('visible');
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(browser.added).toHaveBeenCalledWith('online', expect.any(Function));
    FakeWebSocket.last.serverClose(1006);
    await client.close();
    expect(browser.removed).toHaveBeenCalledWith('online', browser.added.mock.calls[0][1]);
    browser.online();
    browser.visibility('visible');
    await jest.advanceTimersByTimeAsync(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
  });
});

describe('back-off after the server comes back from a crash', () => {
  it.each([1006, 1011, 1012, 1013, 4000])(
    'a connection welcomed after a healthy one that ends with %i restarts from the minimum delay, once',
    async (code) => {
      const { client } = await openClient({ healthyAfterMs: 10_000 });
      const disconnects = record(client, 'disconnect');
      await jest.advanceTimersByTimeAsync(10_000); // healthy: the back-off is at its base
      // The server crashes; restarting takes a few attempts.
      await failUntilDelay(disconnects, 200);
      await jest.advanceTimersByTimeAsync(200);
      // It comes back and welcomes us, then dies again 2 s later (before proving healthy).
      if (code === 4000) {
        // A dead host: nothing arrives, and our heartbeat gives up after 2 x heartbeat_ms.
        FakeWebSocket.last.accept({ heartbeat_ms: 1_000 });
        await jest.advanceTimersByTimeAsync(2_000);
        expect(disconnects.at(-1)).toMatchObject({ code: 4000, reason: 'heartbeat timeout' });
      } else {
        FakeWebSocket.last.accept();
        await jest.advanceTimersByTimeAsync(2_000);
        FakeWebSocket.last.serverClose(code);
      }
      const afterComeback = disconnects.at(-1)!.retryInMs!;
      // 1012 is retried at once anyway; its next failure shows where the back-off stands.
      if (code === 1012) {
        expect(afterComeback).toBe(0);
        await settle();
        FakeWebSocket.last.serverClose(1006);
        expect(disconnects.at(-1)!.retryInMs).toBe(50);
      } else {
        expect(afterComeback).toBe(50);
      }
      await jest.advanceTimersByTimeAsync(disconnects.at(-1)!.retryInMs!);
      // A server that keeps welcoming and dying is not hammered: this time the back-off goes on.
      FakeWebSocket.last.accept();
      FakeWebSocket.last.serverClose(1006);
      expect(disconnects.at(-1)!.retryInMs).toBe(100);
      await client.close();
    },
  );

  it('the first crash after a healthy connection starts from the minimum too', async () => {
    const { client, ws } = await openClient({ healthyAfterMs: 10_000 });
    const disconnects = record(client, 'disconnect');
    await jest.advanceTimersByTimeAsync(10_000);
    ws.serverClose(1006);
    expect(disconnects.map((d) => d.retryInMs)).toEqual([50]);
    await client.close();
  });

  it('a refusal (4029) after the comeback does not reset the back-off', async () => {
    const { client } = await openClient({ healthyAfterMs: 10_000 });
    const disconnects = record(client, 'disconnect');
    await jest.advanceTimersByTimeAsync(10_000);
    await failUntilDelay(disconnects, 200);
    await jest.advanceTimersByTimeAsync(200);
    FakeWebSocket.last.accept();
    FakeWebSocket.last.serverClose(4029, 'flooding');
    expect(disconnects.map((d) => d.retryInMs)).toEqual([50, 100, 200, 400]);
    await client.close();
  });
});
