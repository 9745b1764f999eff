import { Injectable } from '@nestjs/common';

/** What the debug console's live tail shows: one event per ack, refusal or delivery on this node. */
export type TailEvent =
  | { kind: 'ack'; at: number; conversation: string; user: string; msg_id: string; ref: string }
  | {
      kind: 'delivery';
      at: number;
      conversation: string;
      /** The recipient. */
      user: string;
      msg_id: string;
      from: string;
      seq: number;
      /** The body as JSON, cut to BODY_PREVIEW characters (bounds what a backed-up tail holds). */
      body: string;
    }
  | {
      kind: 'error';
      at: number;
      conversation?: string;
      user: string;
      code: string;
      message: string;
      ref?: string;
    }
  /** Events this subscriber missed because it did not read fast enough. */
  | { kind: 'dropped'; at: number; count: number };

/** Exactly one of the two. */
export type TailFilter =
  { conversation: string; user?: undefined } | { user: string; conversation?: undefined };

/** Where a subscriber's events go (an SSE response); `write` returns false while it is backed up. */
export interface TailSink {
  write(event: TailEvent): boolean;
}

/**
 * One tail subscriber: writes straight to its sink while the sink keeps up, queues at most
 * `maxQueued` events while it is backed up, and counts (then reports) what it had to drop.
 */
export class TailSubscriber {
  private readonly queue: TailEvent[] = [];
  private blocked = false;
  private dropped = 0;

  constructor(
    readonly filter: TailFilter,
    private readonly sink: TailSink,
    private readonly maxQueued: number,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  offer(event: TailEvent): void {
    if (!this.blocked) {
      this.blocked = !this.sink.write(event);
    } else if (this.queue.length < this.maxQueued) {
      this.queue.push(event);
    } else {
      this.dropped++;
    }
  }

  /** The sink can take more (the response's 'drain'). */
  drained(): void {
    this.blocked = false;
    while (!this.blocked && this.queue.length > 0) this.blocked = !this.sink.write(this.queue.shift()!);
    if (!this.blocked && this.dropped > 0) {
      const count = this.dropped;
      this.dropped = 0;
      this.blocked = !this.sink.write({ kind: 'dropped', at: Date.now(), count });
    }
  }
}

export const TAIL_LIMITS = { maxSubscribers: 16, maxQueued: 1_000 };
const BODY_PREVIEW = 1_024;

/** A message body as the tail shows it: JSON, at most BODY_PREVIEW characters. */
export function bodyPreview(body: unknown): string {
  const json = JSON.stringify(body) ?? 'null';
  return json.length <= BODY_PREVIEW ? json : `${json.slice(0, BODY_PREVIEW)}…`;
}

/**
 * In-process fan-out from the gateway (ingress acks and refusals, egress deliveries) to the debug
 * console's tails. Publishers check `active` first, so with nobody tailing nothing is built or looked up.
 */
@Injectable()
export class TailHub {
  private readonly byConversation = new Map<string, Set<TailSubscriber>>();
  private readonly byUser = new Map<string, Set<TailSubscriber>>();
  private count = 0;
  readonly limits = TAIL_LIMITS;

  get active(): boolean {
    return this.count > 0;
  }

  get subscribers(): number {
    return this.count;
  }

  /** null when `maxSubscribers` are already tailing. */
  subscribe(filter: TailFilter, sink: TailSink): TailSubscriber | null {
    if (this.count >= this.limits.maxSubscribers) return null;
    const sub = new TailSubscriber(filter, sink, this.limits.maxQueued);
    const [index, key] = this.slot(filter);
    let set = index.get(key);
    if (!set) index.set(key, (set = new Set()));
    set.add(sub);
    this.count++;
    return sub;
  }

  unsubscribe(sub: TailSubscriber): void {
    const [index, key] = this.slot(sub.filter);
    const set = index.get(key);
    if (!set?.delete(sub)) return;
    this.count--;
    if (set.size === 0) index.delete(key);
  }

  /** Whether any tail follows this conversation or user (lets a publisher skip building the event). */
  wants(conversation: string | undefined, user: string): boolean {
    return (
      this.count > 0 &&
      ((conversation !== undefined && this.byConversation.has(conversation)) || this.byUser.has(user))
    );
  }

  /** Offers the event to every tail of its conversation and of its user (a subscriber has one filter). */
  publish(event: Exclude<TailEvent, { kind: 'dropped' }>): void {
    if (this.count === 0) return;
    if (event.conversation !== undefined)
      this.byConversation.get(event.conversation)?.forEach((s) => s.offer(event));
    this.byUser.get(event.user)?.forEach((s) => s.offer(event));
  }

  private slot(filter: TailFilter): [Map<string, Set<TailSubscriber>>, string] {
    return filter.conversation !== undefined
      ? [this.byConversation, filter.conversation]
      : [this.byUser, filter.user];
  }
}
