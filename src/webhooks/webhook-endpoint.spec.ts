import { Logger } from '@nestjs/common';
import { MetricsService } from '../metrics/metrics.service';
import { PostOutcome, WebhookClient } from './webhook-client';
import { WebhookEndpoint } from './webhook-endpoint';
import { verifySignature } from './webhook-signature';

/** A client whose answers the test scripts: each POST takes the next outcome (then 2xx). */
class ScriptedClient extends WebhookClient {
  readonly posts: { headers: Record<string, string>; body: string }[] = [];
  constructor(private readonly script: PostOutcome[]) {
    super();
  }
  override async post(_url: string, headers: Record<string, string>, body: string): Promise<PostOutcome> {
    this.posts.push({ headers, body });
    return this.script.shift() ?? { ok: true };
  }
}

const fail: PostOutcome = { ok: false, reason: 'http_5xx', detail: 'HTTP 503' };
const records = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    schema_version: 1,
    kind: 'message',
    id: `m${i}`,
    conversation_id: 'c',
    ts: Date.now(),
  }));
const settings = {
  secrets: ['s3cret'],
  batchMax: 2,
  timeoutMs: 1000,
  retryForMs: 60_000,
  backoffMaxMs: 20,
  backoffMinMs: 5,
};

describe('WebhookEndpoint', () => {
  beforeAll(() => Logger.overrideLogger(['error']));

  it('POSTs a batch in signed chunks of batchMax, in order, retrying a failed chunk before the next', async () => {
    const client = new ScriptedClient([fail, fail]);
    const metrics = new MetricsService();
    const endpoint = new WebhookEndpoint('http://hook', settings, client, metrics);
    await endpoint.handle({ partition: 0, records: records(5) });
    const bodies = client.posts.map((p) =>
      (JSON.parse(p.body) as { events: { id: string }[] }).events.map((e) => e.id),
    );
    expect(bodies).toEqual([['m0', 'm1'], ['m0', 'm1'], ['m0', 'm1'], ['m2', 'm3'], ['m4']]);
    for (const p of client.posts)
      expect(verifySignature('s3cret', p.headers['relay-signature'], p.body)).toBe(true);
    // The same delivery id on every retry of a chunk.
    expect(new Set(client.posts.slice(0, 3).map((p) => p.headers['relay-delivery'])).size).toBe(1);
    expect((await metrics.webhookFailures.get()).values[0]).toMatchObject({
      value: 2,
      labels: { reason: 'http_5xx' },
    });
    expect((await metrics.webhookEvents.get()).values[0].value).toBe(5);
  });

  it('drops a chunk after retryForMs of failures, counted, and goes on', async () => {
    const client = new ScriptedClient(Array.from({ length: 1000 }, () => fail));
    const metrics = new MetricsService();
    const endpoint = new WebhookEndpoint('http://hook', { ...settings, retryForMs: 50 }, client, metrics);
    await endpoint.handle({ partition: 0, records: records(2) });
    expect(client.posts.length).toBeGreaterThan(2);
    expect((await metrics.webhookDropped.get()).values[0].value).toBe(2);
  });

  it('stop() interrupts a retry and leaves the batch uncommitted (the handler throws)', async () => {
    const client = new ScriptedClient(Array.from({ length: 1000 }, () => fail));
    const endpoint = new WebhookEndpoint(
      'http://hook',
      { ...settings, backoffMaxMs: 60_000, backoffMinMs: 60_000 },
      client,
      new MetricsService(),
    );
    const handling = endpoint.handle({ partition: 0, records: records(1) });
    while (client.posts.length === 0) await new Promise((r) => setTimeout(r, 5));
    endpoint.stop();
    await expect(handling).rejects.toThrow('stopping');
  });
});
