import { MemoryBusDriver } from '../../src/bus/drivers/memory-bus.driver';
import { MessageBus } from '../../src/bus/message-bus';
import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';

/** Failure cases staged through the embedded bus (the Kafka suite stages the same with a dead broker). */
describe('embedded engine: bus outages', () => {
  let t: TestApp;
  let bus: MemoryBusDriver;
  beforeAll(async () => {
    // No readiness grace: the health case below checks that an outage is reported at once.
    t = await startTestApp({ READY_DEPENDENCY_GRACE_MS: '0' });
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

describe('embedded engine: retention', () => {
  it('a cursor whose successors expired resumes with recovered:false, and the cursor from welcome is honoured next time', async () => {
    const t = await startTestApp({ OUTBOX_RETENTION_SEC: '1' });
    try {
      await putConversation(t.http, 'c', ['alice', 'bob']);
      const { client: alice } = await TestClient.connect(`${t.ws}?user_id=alice`);
      const { client: bob } = await TestClient.connect(`${t.ws}?user_id=bob`);
      await alice.sendMessage('c', 'seen', 's1');
      const [seen] = await bob.messages(1);
      bob.terminate();
      await alice.sendMessage('c', 'expires', 's2');
      // Wait until the missed delivery is gone: a fresh device of bob's is then owed nothing.
      await waitFor(
        async () => {
          const { client } = await TestClient.connect(`${t.ws}?user_id=bob`);
          client.send({ type: 'ping' });
          await client.next((f) => f.type === 'pong');
          const owed = client.pending('message').length;
          client.terminate();
          return owed === 0;
        },
        5_000,
        'the delivery to expire',
        100,
      );
      await alice.sendMessage('c', 'kept', 's3');
      const { client: back, welcome } = await TestClient.connect(`${t.ws}?user_id=bob`, seen.msg_id);
      expect(welcome.payload?.recovered).toBe(false);
      const [kept] = await back.messages(1);
      expect(kept.payload?.body).toBe('kept');
      back.terminate();
      const { client: again, welcome: w2 } = await TestClient.connect(
        `${t.ws}?user_id=bob`,
        String(welcome.payload?.cursor),
      );
      expect(w2.payload?.recovered).toBe(true);
      expect((await again.messages(1))[0].payload?.body).toBe('kept');
      again.terminate();
      alice.terminate();
    } finally {
      await t.close();
    }
  }, 20_000); // waits out a 1 s retention and a purge: more than the default 5 s on a loaded machine
});
