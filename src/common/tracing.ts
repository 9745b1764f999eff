import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Attributes, Span, SpanKind, SpanStatusCode, trace, Tracer, ROOT_CONTEXT } from '@opentelemetry/api';
import { parseTraceParent } from '@opentelemetry/core';
import type { SpanExporter, SpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

/**
 * OpenTelemetry tracing of messages, off unless `OTEL_ENABLED=true`: one trace per message, a span
 * at gateway ingress (publish), one in the router (outbox append + push) and one at gateway egress.
 * The context crosses the bus in the IngressMessage's optional `trace` field and the node channel in
 * PushBatch `traces` (W3C traceparent strings), so every bus engine and channel carries it as is.
 *
 * Hot paths ask `messageTracer()` first: while tracing is off it is null and no span object, context
 * or traceparent string is created. The tracer is process-wide (like OTel's own globals); it is not
 * registered globally, so nothing else in the process starts emitting spans by accident.
 */
let tracer: Tracer | null = null;
let provider: TracerProvider | null = null;

export function messageTracer(): Tracer | null {
  return tracer;
}

/**
 * Starts tracing with `exporter` (OTLP/HTTP to `endpoint` when none is given; tests pass an
 * InMemorySpanExporter, exported synchronously so a span is visible as soon as it ended).
 */
export async function startTracing(opts: { endpoint?: string; exporter?: SpanExporter }): Promise<void> {
  if (provider) return;
  // Loaded only when tracing is on: the SDK and exporter are a tenth of a cold start otherwise.
  const sdk = await import('@opentelemetry/sdk-trace');
  const processor: SpanProcessor = opts.exporter
    ? new sdk.SimpleSpanProcessor({ exporter: opts.exporter })
    : new sdk.BatchSpanProcessor({
        exporter: new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter({
          url: `${opts.endpoint}/v1/traces`,
        }),
      });
  if (provider) return; // another start won the race while the SDK loaded
  provider = new sdk.TracerProvider({ spanProcessors: [processor] });
  tracer = provider.getTracer('relay');
}

/** Flushes what is buffered and turns tracing off. */
export async function stopTracing(): Promise<void> {
  const p = provider;
  provider = null;
  tracer = null;
  await p?.shutdown();
}

/** Flushes the spans still buffered when the app shuts down (AppModule adds it when tracing is on). */
@Injectable()
export class TracingShutdown implements OnApplicationShutdown {
  async onApplicationShutdown(): Promise<void> {
    await stopTracing();
  }
}

/** A span whose parent is the traceparent carried with the message (a root span without one). */
export function startSpan(
  t: Tracer,
  name: string,
  kind: SpanKind,
  attributes: Attributes,
  parent: string | null | undefined,
): Span {
  const sc = parent ? parseTraceParent(parent) : null;
  const ctx = sc ? trace.setSpanContext(ROOT_CONTEXT, sc) : ROOT_CONTEXT;
  return t.startSpan(name, { kind, attributes }, ctx);
}

/** The W3C traceparent of `span`, to carry to the next hop. */
export function traceparentOf(span: Span): string {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

export function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message ?? String(err) });
  }
  span.end();
}

export { SpanKind };
