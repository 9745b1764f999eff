import type { WebSocketLike } from './socket.js';

/** What the long-polling transport needs of `fetch` (the browser's, Node's, or one passed in). */
export type FetchLike = (
  url: string,
  init: {
    method: string;
    headers: Record<string, string>;
    body?: string;
    signal?: AbortSignal;
    keepalive?: boolean;
  },
) => Promise<{ status: number; text(): Promise<string> }>;

type Handler<E> = ((event: E) => void) | null;

/** Most client frames in one POST (the server's POLL_MAX_REQUEST_FRAMES default). */
const MAX_FRAMES_PER_POST = 100;
/** A poll is held up to POLL_TIMEOUT_MS (25 s) by the server; give up on one that takes much longer. */
const POLL_ABORT_MS = 60_000;

/**
 * `ws(s)://host/path/ws?…` -> `http(s)://host/path/v1/poll` plus the credentials: a `token` in the URL
 * moves to an `Authorization: Bearer` header (the server refuses tokens in long-polling URLs), a dev
 * `user_id` stays in the query.
 */
export function pollEndpoint(wsUrl: string): { base: string; query: string; token: string | undefined } {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : url.protocol === 'ws:' ? 'http:' : url.protocol;
  const token = url.searchParams.get('token') ?? undefined;
  url.searchParams.delete('token');
  const query = url.searchParams.toString();
  const path = url.pathname.replace(/\/ws\/?$/, '').replace(/\/+$/, '');
  return { base: `${url.protocol}//${url.host}${path}/v1/poll`, query, token };
}

/** Close codes the loop understands, by the HTTP status that ended the session. */
function closeCodeOf(status: number): number {
  switch (status) {
    case 401:
      return 4001; // unauthorized: the loop asks getToken or gives up
    case 413:
      return 1009;
    case 429:
      return 4029;
    case 503:
      return 1012; // draining or unavailable: reconnect (elsewhere)
    default:
      return 1006; // 404/410 session gone, network error, anything else: reconnect and resume
  }
}

/**
 * The long-polling transport behind the WebSocket interface the connection loop already drives
 * (docs/protocol.md "Long polling"): the loop's `hello` opens a session (`POST /v1/poll/open`), its
 * other frames are POSTed in order, and one `GET` at a time brings the server's frames, each handed
 * to `onmessage` like a socket's. The loop, the send queue and delivery do not know which transport
 * they use: cursor, queued sends and dedupe state carry over when the transport changes.
 *
 * Invariants:
 * - At most one POST is in flight, so frames reach the server in the order they were sent; frames
 *   sent meanwhile go in the next POST (at most MAX_FRAMES_PER_POST each).
 * - At most one GET is in flight; it carries the cursor of the last `message` handed on (or the
 *   welcome's), so a poll answered by any gateway node continues exactly there.
 * - Any failure (HTTP error, network error) closes the socket once, with a WebSocket-like code; after
 *   close no handler is called and the session is ended on the server (DELETE, best effort).
 */
export class LongPollSocket implements WebSocketLike {
  onopen: Handler<unknown> = null;
  onmessage: Handler<{ data: unknown }> = null;
  onerror: Handler<unknown> = null;
  onclose: Handler<{ code: number; reason: string }> = null;

  private state = 0;
  private sid: string | undefined;
  private cursor: string | undefined;
  private readonly outgoing: string[] = [];
  private posting = false;
  private readonly aborts = new Set<AbortController>();
  private readonly endpoint: ReturnType<typeof pollEndpoint>;

  constructor(
    url: string,
    private readonly fetchImpl: FetchLike,
  ) {
    this.endpoint = pollEndpoint(url);
    setTimeout(() => {
      if (this.state !== 0) return;
      this.state = 1;
      this.onopen?.({});
    }, 0);
  }

  get readyState(): number {
    return this.state;
  }

  send(data: string): void {
    if (this.state !== 1) throw new Error('the long-polling session is not open');
    if (this.sid === undefined && this.outgoing.length === 0 && !this.posting && isHello(data)) {
      void this.open(data);
      return;
    }
    this.outgoing.push(data);
    this.flush();
  }

  close(code = 1000, reason = ''): void {
    if (this.state >= 2) return;
    this.finish(code, reason, false);
  }

  private async open(hello: string): Promise<void> {
    this.posting = true;
    const last = (JSON.parse(hello) as { payload?: { last_msg_id?: string } }).payload?.last_msg_id;
    const answer = await this.request(
      'POST',
      '/open',
      JSON.stringify(last === undefined ? {} : { last_msg_id: last }),
    );
    this.posting = false;
    if (!answer) return;
    const { sid, frames } = answer as { sid?: unknown; frames?: unknown };
    if (typeof sid !== 'string' || !Array.isArray(frames)) return this.fail(1006, 'bad answer to open');
    this.sid = sid;
    const welcome = frames[0] as { type?: string; payload?: { cursor?: unknown } } | undefined;
    if (welcome?.type === 'welcome' && typeof welcome.payload?.cursor === 'string')
      this.cursor = welcome.payload.cursor;
    this.deliver(frames);
    if (this.state !== 1) return;
    void this.pollLoop();
    this.flush();
  }

  private flush(): void {
    if (this.posting || this.sid === undefined || this.outgoing.length === 0 || this.state !== 1) return;
    const batch = this.outgoing.splice(0, MAX_FRAMES_PER_POST);
    this.posting = true;
    void this.request('POST', this.sessionPath(), `[${batch.join(',')}]`).then((answer) => {
      this.posting = false;
      if (answer === undefined) return;
      this.deliver(answer as unknown[]);
      this.flush();
    });
  }

  private async pollLoop(): Promise<void> {
    while (this.state === 1) {
      const answer = await this.request('GET', this.sessionPath(), undefined, POLL_ABORT_MS);
      if (answer === undefined) return;
      this.deliver(answer as unknown[]);
    }
  }

  /** Hands frames to `onmessage` in order; `message` frames advance the cursor the next poll carries. */
  private deliver(frames: unknown[]): void {
    if (!Array.isArray(frames)) return this.fail(1006, 'bad answer from the server');
    for (const frame of frames) {
      if (this.state !== 1) return;
      const f = frame as { type?: unknown; msg_id?: unknown };
      if (f?.type === 'message' && typeof f.msg_id === 'string') this.cursor = f.msg_id;
      this.onmessage?.({ data: JSON.stringify(frame) });
    }
  }

  private sessionPath(): string {
    const cursor = this.cursor === undefined ? '' : `?cursor=${encodeURIComponent(this.cursor)}`;
    return `/${encodeURIComponent(this.sid!)}${cursor}`;
  }

  /** One request; its parsed JSON answer, or undefined after closing the socket on any failure. */
  private async request(method: string, path: string, body?: string, timeoutMs?: number): Promise<unknown> {
    const abort = new AbortController();
    this.aborts.add(abort);
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => abort.abort(), timeoutMs);
    try {
      const headers: Record<string, string> = {};
      if (this.endpoint.token !== undefined) headers.authorization = `Bearer ${this.endpoint.token}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await this.fetchImpl(this.url(path), { method, headers, body, signal: abort.signal });
      const text = await res.text();
      if (this.state >= 2) return undefined;
      if (res.status !== 200) {
        const message = safeMessage(text);
        this.onerror?.({
          message: `Unexpected server response: ${res.status}${message ? ` (${message})` : ''}`,
        });
        this.fail(closeCodeOf(res.status), message || `HTTP ${res.status}`);
        return undefined;
      }
      return JSON.parse(text) as unknown;
    } catch (err) {
      if (this.state < 2) {
        this.onerror?.({ message: (err as Error)?.message ?? String(err) });
        this.fail(1006, 'long-polling request failed');
      }
      return undefined;
    } finally {
      clearTimeout(timer);
      this.aborts.delete(abort);
    }
  }

  private url(path: string): string {
    const { base, query } = this.endpoint;
    if (!query) return base + path;
    return base + path + (path.includes('?') ? '&' : '?') + query;
  }

  private fail(code: number, reason: string): void {
    if (this.state >= 2) return;
    this.finish(code, reason, true);
  }

  /** Closes once: stops every request, ends the server's copy, then reports the close. */
  private finish(code: number, reason: string, report: boolean): void {
    this.state = 3;
    for (const a of this.aborts) a.abort();
    this.aborts.clear();
    if (this.sid !== undefined && code !== 1006) {
      const headers: Record<string, string> = {};
      if (this.endpoint.token !== undefined) headers.authorization = `Bearer ${this.endpoint.token}`;
      this.fetchImpl(this.url(`/${encodeURIComponent(this.sid)}`), {
        method: 'DELETE',
        headers,
        keepalive: true,
      }).catch(() => undefined);
    }
    const onclose = this.onclose;
    if (report || onclose) setTimeout(() => onclose?.({ code, reason }), 0);
  }
}

function isHello(data: string): boolean {
  return /^\s*\{\s*"type"\s*:\s*"hello"/.test(data);
}

function safeMessage(text: string): string {
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    return typeof m === 'string' ? m.slice(0, 200) : '';
  } catch {
    return '';
  }
}
