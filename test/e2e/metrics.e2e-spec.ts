import { MetricsServer } from '../../src/metrics/metrics.server';
import { OutboxPurgeService } from '../../src/outbox/outbox-purge.service';
import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';

/** Sum of the samples of `name` whose labels include `labels` (Prometheus text format). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/**
 * Every series an operator needs, provoked through the real endpoints and read back from `/metrics`
 * (served on METRICS_PORT; the public port answers 404 for it).
 */
describe('metrics (embedded engine)', () => {
  let t: TestApp;
  let metricsUrl: string;
  const scrape = async () => {
    const res = await fetch(metricsUrl);
    expect(res.status).toBe(200);
    return res.text();
  };
  /** Waits until the series reaches `min` (counters move when the server sees the event, not the client). */
  const reaches = (name: string, labels: Record<string, string>, min = 1) =>
    waitFor(
      async () => sample(await scrape(), name, labels) >= min,
      5_000,
      `${name} ${JSON.stringify(labels)} >= ${min}`,
    );

  beforeAll(async () => {
    t = await startTestApp({
      METRICS_PORT: '0',
      MAX_FRAME_BYTES: '4096',
      SEND_BURST: '3',
      SEND_RATE_PER_SEC: '1',
      FRAME_BURST: '30',
      FRAME_RATE_PER_SEC: '5',
      FLOOD_CLOSE_AFTER: '10',
    });
    metricsUrl = `http://127.0.0.1:${t.app.get(MetricsServer).port}/metrics`;
    await putConversation(t.http, 'c', ['alice', 'bob', 'spammer']);
    await putConversation(t.http, 'private', ['carol', 'dave']);
  });
  afterAll(() => t.close());

  it('serves /metrics on METRICS_PORT only', async () => {
    expect((await fetch(`${t.http}/metrics`)).status).toBe(404);
    expect(await scrape()).toContain('relay_connections ');
  });

  it('counts a delivered message: ack, connects, fresh resumes, latency at the router and the gateway', async () => {
    const { client: alice } = await TestClient.connect(`${t.ws}?user_id=alice`);
    const { client: bob } = await TestClient.connect(`${t.ws}?user_id=bob`);
    expect((await alice.sendMessage('c', 'hi', 'd1')).type).toBe('ack');
    await bob.messages(1);
    const text = await scrape();
    expect(sample(text, 'relay_messages_acked_total')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'relay_connects_total')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'relay_resumes_total', { outcome: 'fresh' })).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'relay_deliveries_total')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'relay_deliver_latency_seconds_count', { stage: 'router' })).toBeGreaterThanOrEqual(
      1,
    );
    expect(sample(text, 'relay_deliver_latency_seconds_count', { stage: 'gateway' })).toBeGreaterThanOrEqual(
      1,
    );
    alice.terminate();
    bob.terminate();
  });

  it('counts resumes by outcome: recovered and lost', async () => {
    const { client: first, welcome } = await TestClient.connect(`${t.ws}?user_id=bob`);
    first.terminate();
    const { client: back, welcome: again } = await TestClient.connect(
      `${t.ws}?user_id=bob`,
      String(welcome.payload?.cursor),
    );
    expect(again.payload?.recovered).toBe(true);
    back.terminate();
    // A cursor of another storage generation: what it was owed cannot be told any more.
    const { client: lost, welcome: gone } = await TestClient.connect(
      `${t.ws}?user_id=bob`,
      'otherepoch-000000000001',
    );
    expect(gone.payload?.recovered).toBe(false);
    lost.terminate();
    const text = await scrape();
    expect(sample(text, 'relay_resumes_total', { outcome: 'recovered' })).toBe(1);
    expect(sample(text, 'relay_resumes_total', { outcome: 'lost' })).toBe(1);
  });

  it('counts every error code a frame is answered with, and the send errors apart', async () => {
    const early = await TestClient.open(`${t.ws}?user_id=alice`);
    early.send({ type: 'send', msg_id: 'e0', payload: { conversation_id: 'c', body: 1 } });
    expect((await early.next((f) => f.type === 'error')).payload?.code).toBe('handshake_required');
    early.terminate();

    const { client: c } = await TestClient.connect(`${t.ws}?user_id=alice`);
    c.send('not json');
    expect((await c.next((f) => f.type === 'error')).payload?.code).toBe('bad_frame');
    c.send({ type: 'nope' });
    expect((await c.next((f) => f.type === 'error')).payload?.code).toBe('unknown_type');
    expect((await c.sendMessage('missing', 1, 'nf')).payload?.code).toBe('not_found');
    expect((await c.sendMessage('private', 1, 'fb')).payload?.code).toBe('forbidden');
    c.send('x'.repeat(5_000));
    expect((await c.next((f) => f.type === 'error')).payload?.code).toBe('too_large');
    expect(await c.waitClosed()).toBe(1009);

    const { client: spammer } = await TestClient.connect(`${t.ws}?user_id=spammer`);
    const replies = [];
    for (let i = 0; i < 6; i++) replies.push(spammer.sendMessage('c', i, `r${i}`));
    const codes = (await Promise.all(replies)).map((f) => (f.type === 'ack' ? 'ack' : f.payload?.code));
    expect(codes).toContain('rate_limited');
    spammer.terminate();

    const text = await scrape();
    const counted = (name: string, codes: string[]) =>
      Object.fromEntries(codes.map((code) => [code, sample(text, name, { code })]));
    const frameCodes = [
      'handshake_required',
      'bad_frame',
      'unknown_type',
      'not_found',
      'forbidden',
      'too_large',
    ];
    expect(counted('relay_frames_rejected_total', frameCodes)).toEqual(
      Object.fromEntries(frameCodes.map((code) => [code, 1])),
    );
    expect(sample(text, 'relay_frames_rejected_total', { code: 'rate_limited' })).toBeGreaterThanOrEqual(1);
    // send errors are a subset, counted apart (the ones that answer a `send` past the handshake).
    expect(counted('relay_send_rejected_total', ['not_found', 'forbidden'])).toEqual({
      not_found: 1,
      forbidden: 1,
    });
    expect(sample(text, 'relay_send_rejected_total', { code: 'rate_limited' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'relay_connections_closed_by_server_total', { code: '1009' })).toBe(1);
    await reaches('relay_connections_closed_total', { code: '1009', by: 'server' });
  });

  it('counts a flood close (4029) and a client close, each with who closed', async () => {
    const { client: flood } = await TestClient.connect(`${t.ws}?user_id=alice`);
    for (let i = 0; i < 60; i++) flood.send({ type: 'ping' });
    expect(await flood.waitClosed()).toBe(4029);
    await reaches('relay_connections_closed_by_server_total', { code: '4029' });
    await reaches('relay_connections_closed_total', { code: '4029', by: 'server' });

    const { client: polite } = await TestClient.connect(`${t.ws}?user_id=alice`);
    polite.close();
    expect(await polite.waitClosed()).toBe(1005);
    await reaches('relay_connections_closed_total', { by: 'client' });
    expect(sample(await scrape(), 'relay_connections_closed_by_server_total', { code: '1005' })).toBe(0);
  });

  it('counts a refused authentication', async () => {
    await expect(TestClient.open(t.ws)).rejects.toThrow('401');
    expect(sample(await scrape(), 'relay_auth_failures_total', { reason: 'missing_token' })).toBe(1);
  });

  it('shows the outbox size and the age of its oldest delivery after a purge tick', async () => {
    await t.app.get(OutboxPurgeService).purge();
    const text = await scrape();
    // Every delivery so far is still retained (default retention): at least the three of 'hi'.
    expect(sample(text, 'relay_outbox_rows')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'relay_outbox_oldest_age_seconds')).toBeGreaterThan(0);
  });
});
