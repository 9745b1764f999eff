import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { InMemorySpanExporter, ReadableSpan } from '@opentelemetry/sdk-trace';
import { MessageBus } from '../../src/bus/message-bus';
import { startTracing, stopTracing } from '../../src/common/tracing';
import { IngressMessage } from '../../src/protocol/envelope';
import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';

const ofMessage = (spans: ReadableSpan[], id: string, name: string) =>
  spans.find((s) => s.name === name && s.attributes['messaging.message.id'] === id);

/** One trace per message on the embedded engine: gateway publish -> router route -> gateway deliver. */
describe('tracing (embedded engine, in-memory exporter)', () => {
  let t: TestApp;
  const exporter = new InMemorySpanExporter();

  beforeAll(async () => {
    await startTracing({ exporter });
    t = await startTestApp();
    await putConversation(t.http, 'c', ['alice', 'bob']);
  });
  afterAll(async () => {
    await t?.close();
    await stopTracing();
  });

  it('shows the spans of one message across gateway -> router -> gateway with one trace id; the wire frames are unchanged', async () => {
    const { client: alice } = await TestClient.connect(`${t.ws}?user_id=alice`);
    const { client: bob } = await TestClient.connect(`${t.ws}?user_id=bob`);
    const ack = await alice.sendMessage('c', 'traced', 't-1');
    const id = String(ack.msg_id);
    const [m] = await bob.messages(1);
    // v1.1 adds `seq`; tracing adds nothing.
    expect(Object.keys(m.payload ?? {}).sort()).toEqual([
      'body',
      'conversation_id',
      'from',
      'id',
      'seq',
      'ts',
    ]);

    const [publish, route, deliver] = (await waitFor(
      () => {
        const spans = exporter.getFinishedSpans();
        const found = ['relay.gateway.publish', 'relay.router.route', 'relay.gateway.deliver'].map((n) =>
          ofMessage(spans, id, n),
        );
        return found.every(Boolean) ? (found as ReadableSpan[]) : null;
      },
      5_000,
      'the three spans of the message',
    )) as ReadableSpan[];
    const traceId = publish.spanContext().traceId;
    expect(route.spanContext().traceId).toBe(traceId);
    expect(deliver.spanContext().traceId).toBe(traceId);
    expect(publish.parentSpanContext).toBeUndefined();
    expect(route.parentSpanContext?.spanId).toBe(publish.spanContext().spanId);
    expect(deliver.parentSpanContext?.spanId).toBe(route.spanContext().spanId);
    expect(publish.attributes['relay.conversation_id']).toBe('c');
    // Another message is another trace.
    const second = await alice.sendMessage('c', 'other', 't-2');
    await bob.messages(1);
    const other = (await waitFor(
      () => ofMessage(exporter.getFinishedSpans(), String(second.msg_id), 'relay.gateway.publish'),
      5_000,
      'the second message span',
    )) as ReadableSpan;
    expect(other.spanContext().traceId).not.toBe(traceId);
    alice.terminate();
    bob.terminate();
  });
});

describe('tracing off (the default)', () => {
  it('puts no trace context on the bus record', async () => {
    const t = await startTestApp();
    try {
      await putConversation(t.http, 'c', ['alice', 'bob']);
      const published: IngressMessage[] = [];
      const bus = t.app.get(MessageBus);
      const publish = bus.publish.bind(bus);
      jest.spyOn(bus, 'publish').mockImplementation((msg: IngressMessage) => {
        published.push(msg);
        return publish(msg);
      });
      const { client: alice } = await TestClient.connect(`${t.ws}?user_id=alice`);
      expect((await alice.sendMessage('c', 'plain', 'p-1')).type).toBe('ack');
      expect(published).toHaveLength(1);
      expect(published[0]).not.toHaveProperty('trace');
      alice.terminate();
    } finally {
      await t.close();
    }
  });
});

describe('OTEL_ENABLED=true', () => {
  let collector: Server;
  const posts: { url: string; body: Buffer }[] = [];
  beforeAll(async () => {
    collector = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        posts.push({ url: req.url ?? '', body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => collector.close(() => resolve())));

  it('exports the spans to OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces (flushed on shutdown at the latest)', async () => {
    const { port } = collector.address() as AddressInfo;
    const t = await startTestApp({
      OTEL_ENABLED: 'true',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    });
    let id: string;
    try {
      await putConversation(t.http, 'c', ['alice', 'bob']);
      const { client: alice } = await TestClient.connect(`${t.ws}?user_id=alice`);
      id = String((await alice.sendMessage('c', 'exported', 'e-1')).msg_id);
      alice.terminate();
    } finally {
      await t.close();
    }
    await waitFor(
      () => posts.some((p) => p.url === '/v1/traces' && p.body.toString('latin1').includes(id)),
      5_000,
      'the export of the message span',
    );
  });
});
