import { Injectable, OnModuleDestroy } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { TailEvent, TailFilter, TailHub } from '../gateway/tail.hub';

/** An SSE comment every so often keeps proxies from closing a quiet tail. */
const KEEPALIVE_MS = 15_000;

/**
 * The console's live tails as Server-Sent Events: one response per subscriber, fed by the gateway's
 * TailHub. Bounded by the hub (subscribers, queued events per subscriber); every open stream is
 * ended on shutdown so the HTTP server can close.
 */
@Injectable()
export class TailStreams implements OnModuleDestroy {
  private readonly open = new Set<ServerResponse>();

  constructor(private readonly hub: TailHub) {}

  /** false when the hub already has its maximum of subscribers (nothing written then). */
  start(filter: TailFilter, res: ServerResponse): boolean {
    const write = (event: TailEvent) => res.write(`event: ${event.kind}\ndata: ${JSON.stringify(event)}\n\n`);
    const sub = this.hub.subscribe(filter, { write });
    if (!sub) return false;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    // The client knows it is subscribed once this arrives: nothing published before it is missed after.
    res.write(`event: ready\ndata: ${JSON.stringify({ filter, limits: this.hub.limits })}\n\n`);
    res.on('drain', () => sub.drained());
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS).unref();
    this.open.add(res);
    res.on('close', () => {
      clearInterval(keepalive);
      this.hub.unsubscribe(sub);
      this.open.delete(res);
    });
    return true;
  }

  onModuleDestroy(): void {
    for (const res of this.open) res.end();
  }
}
