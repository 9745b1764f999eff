import { MemoryBusDriver } from '../../src/bus/drivers/memory-bus.driver';
import { MessageBus } from '../../src/bus/message-bus';
import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { TestClient } from '../support/ws-client';

/** Failure cases staged through the embedded bus (the Kafka suite stages the same with a dead broker). */
describe('embedded engine: bus outages', () => {
  let t: TestApp;
  let bus: MemoryBusDriver;
  beforeAll(async () => {
    t = await startTestApp();
    bus = t.app.get(MessageBus) as MemoryBusDriver;
    await putConversation(t.http, 'c', ['alice', 'bob']);
  });
  afterAll(() => t.close());

  it('answers unavailable (never a false ack) while the bus is down; the retry with the same ref is acked once', async () => {
    const { client: alice } = await TestClient.connect(`${t.ws}?user_id=alice`);
    const { client: bob } = await TestClient.connect(`${t.ws}?user_id=bob`);
    bus.setAvailable(false);
    try {
      const err = await alice.sendMessage('c', 'lost?', 'un-1');
      expect(err).toMatchObject({ type: 'error', msg_id: 'un-1', payload: { code: 'unavailable' } });
    } finally {
      bus.setAvailable(true);
    }
    const ack = await alice.sendMessage('c', 'lost?', 'un-1');
    expect(ack.type).toBe('ack');
    const [m] = await bob.messages(1);
    expect(m.payload).toMatchObject({ id: ack.msg_id, body: 'lost?' });
    alice.send({ type: 'ping' });
    await alice.next((f) => f.type === 'pong');
    expect(alice.pending('ack')).toHaveLength(0);
    alice.terminate();
    bob.terminate();
  });

  it('/health/ready turns 503 and names the bus while it is down', async () => {
    bus.setAvailable(false);
    try {
      const down = await fetch(`${t.http}/health/ready`);
      expect(down.status).toBe(503);
      const body = (await down.json()) as { details: Record<string, { status: string }> };
      expect(body.details.bus.status).toBe('down');
      expect(body.details.outbox.status).toBe('up');
    } finally {
      bus.setAvailable(true);
    }
    expect((await fetch(`${t.http}/health/ready`)).status).toBe(200);
  });
});
