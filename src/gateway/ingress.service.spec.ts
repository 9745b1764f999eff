import { WebSocket } from 'ws';
import { MessageBus } from '../bus/message-bus';
import { ConversationDirectory } from '../directory/conversation-directory';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryOutboxDriver } from '../outbox/drivers/memory-outbox.driver';
import { IngressMessage } from '../protocol/envelope';
import { Connection } from './connection';
import { MemoryDedupeDriver } from './dedupe/memory-dedupe.driver';
import { IngressService } from './ingress.service';

/** A bus whose publishes the test settles by hand, in any order. */
class ManualBus {
  calls: { message: IngressMessage; resolve: () => void; reject: (e: Error) => void }[] = [];
  publish(message: IngressMessage): Promise<void> {
    return new Promise((resolve, reject) => this.calls.push({ message, resolve, reject }));
  }
}

const directory = {
  members: async (ids: string[]) => new Map(ids.map((id) => [id, ['u']])),
} as unknown as ConversationDirectory;

function setup() {
  const bus = new ManualBus();
  const sent: { type: string; msg_id?: string; payload: { ref?: string; code?: string } }[] = [];
  const ws = { readyState: WebSocket.OPEN, bufferedAmount: 0, send: (t: string) => sent.push(JSON.parse(t)) };
  const conn = new Connection('c', 'u', null, ws as unknown as WebSocket, new MemoryOutboxDriver(1000), {
    sendRatePerSec: 1000,
    sendBurst: 1000,
    frameRatePerSec: 1000,
    frameBurst: 1000,
    floodCloseAfter: 100,
    maxBufferedBytes: 16 << 20,
  });
  const ingress = new IngressService(
    bus as unknown as MessageBus,
    directory,
    new MemoryDedupeDriver(60_000),
    new MetricsService(),
  );
  const send = (ref: string) =>
    ingress.handleSend(conn, { type: 'send', msg_id: ref, payload: { conversation_id: 'c', body: ref } });
  return { bus, sent, send };
}

async function until(cond: () => boolean) {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setImmediate(r));
  expect(cond()).toBe(true);
}

describe('IngressService', () => {
  it('issues publishes in frame order and acks each only when the bus resolved it', async () => {
    const { bus, sent, send } = setup();
    ['a', 'b', 'c'].forEach(send);
    await until(() => bus.calls.length === 3);
    expect(bus.calls.map((c) => c.message.ref)).toEqual(['a', 'b', 'c']);
    expect(sent).toHaveLength(0);
    bus.calls[1].resolve();
    await until(() => sent.length === 1);
    expect(sent[0]).toMatchObject({ type: 'ack', payload: { ref: 'b' } });
  });

  it('after a failed publish, refuses later frames until its publishes drained, so a retry cannot be overtaken', async () => {
    const { bus, sent, send } = setup();
    send('a');
    send('b');
    await until(() => bus.calls.length === 2);
    bus.calls[0].reject(new Error('broker down'));
    await until(() => sent.length === 1);
    send('c'); // b is still in flight: c must not be published ahead of a's retry
    await until(() => sent.length === 2);
    expect(sent.map((f) => [f.type, f.msg_id ?? f.payload.ref, f.payload.code])).toEqual([
      ['error', 'a', 'unavailable'],
      ['error', 'c', 'unavailable'],
    ]);
    expect(bus.calls).toHaveLength(2);
    bus.calls[1].resolve();
    await until(() => sent.length === 3);
    send('a'); // the retry, same ref: same id, published now
    await until(() => bus.calls.length === 3);
    expect(bus.calls[2].message.id).toBe(bus.calls[0].message.id);
  });
});
