import type { Frame } from './ws-client';

/** One HTTP answer of the long-polling endpoints: status and parsed JSON (null for an empty body). */
export interface PollAnswer<T = unknown> {
  status: number;
  body: T;
}

/** Plain HTTP against the long-polling endpoints; `auth` is a query (`user_id=`) or a bearer token. */
export async function pollRequest<T = unknown>(
  base: string,
  method: string,
  path: string,
  opts: {
    auth?: Auth;
    body?: unknown;
    rawBody?: string;
    headers?: Record<string, string>;
    signal?: AbortSignal;
  } = {},
): Promise<PollAnswer<T>> {
  const url = new URL(`${base}/v1/poll${path}`);
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.auth && 'userId' in opts.auth) url.searchParams.set('user_id', opts.auth.userId);
  if (opts.auth && 'token' in opts.auth) headers.authorization = `Bearer ${opts.auth.token}`;
  let body: string | undefined = opts.rawBody;
  if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined) headers['content-type'] ??= 'application/json';
  const res = await fetch(url, { method, headers, body, signal: opts.signal });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
}

export type Auth = { userId: string } | { token: string };

/**
 * A raw long-polling client for tests: opens a session, keeps one poll running and records every frame
 * (poll answers and POST answers alike), tracking its cursor like a real client. Frames are consumed in
 * order by `next`, like TestClient's.
 */
export class PollTestClient {
  readonly frames: Frame[] = [];
  private unread: Frame[] = [];
  private waiters: (() => void)[] = [];
  cursor: string;
  /** Poll requests made and frames they brought (for the requests-per-message figure). */
  polls = 0;
  posts = 0;
  stopped = false;
  /** The status of the last poll that did not answer 200 (the loop stops on it). */
  failure: PollAnswer | null = null;
  private running: Promise<void> | null = null;
  private abort = new AbortController();

  private constructor(
    readonly base: string,
    readonly auth: Auth,
    public sid: string,
    readonly welcome: Frame,
  ) {
    this.cursor = String(welcome.payload?.cursor);
  }

  static async open(base: string, auth: Auth, lastMsgId?: string): Promise<PollTestClient> {
    const res = await pollRequest<{ sid: string; frames: Frame[] }>(base, 'POST', '/open', {
      auth,
      body: lastMsgId === undefined ? {} : { last_msg_id: lastMsgId },
    });
    if (res.status !== 200) throw new Error(`open answered ${res.status}: ${JSON.stringify(res.body)}`);
    const [welcome] = res.body.frames;
    if (welcome?.type !== 'welcome') throw new Error(`open answered ${JSON.stringify(res.body)}`);
    const client = new PollTestClient(base, auth, res.body.sid, welcome);
    client.start();
    return client;
  }

  /** Keeps one poll outstanding until stop() or a non-200 answer. */
  start(): void {
    this.stopped = false;
    this.failure = null;
    this.abort = new AbortController();
    this.running = (async () => {
      while (!this.stopped) {
        let res: PollAnswer<Frame[]>;
        try {
          res = await this.pollOnce();
        } catch (err) {
          if (this.stopped) return;
          throw err;
        }
        if (res.status !== 200) {
          this.failure = res;
          this.wake();
          return;
        }
      }
    })().catch(() => undefined);
  }

  /** One GET with the current cursor; records what it brought. */
  async pollOnce(base = this.base): Promise<PollAnswer<Frame[]>> {
    this.polls++;
    const res = await pollRequest<Frame[]>(
      base,
      'GET',
      `/${encodeURIComponent(this.sid)}?cursor=${encodeURIComponent(this.cursor)}`,
      { auth: this.auth, signal: this.abort.signal },
    );
    if (res.status === 200) this.record(res.body);
    return res;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.running;
    this.abort = new AbortController(); // for polls the test makes by hand from now on
  }

  /** POSTs frames; the answer's frames are recorded too. */
  async post(frames: unknown[], base = this.base): Promise<PollAnswer<Frame[]>> {
    this.posts++;
    const res = await pollRequest<Frame[]>(
      base,
      'POST',
      `/${encodeURIComponent(this.sid)}?cursor=${encodeURIComponent(this.cursor)}`,
      { auth: this.auth, body: frames },
    );
    if (res.status === 200) this.record(res.body);
    return res;
  }

  async sendMessage(conversationId: string, body: unknown, ref: string, timeoutMs = 5_000): Promise<Frame> {
    const res = await this.post([
      { type: 'send', msg_id: ref, payload: { conversation_id: conversationId, body } },
    ]);
    if (res.status !== 200) throw new Error(`POST answered ${res.status}: ${JSON.stringify(res.body)}`);
    return this.next(
      (f) => (f.type === 'ack' && f.payload?.ref === ref) || (f.type === 'error' && f.msg_id === ref),
      timeoutMs,
    );
  }

  async next(match: (f: Frame) => boolean = () => true, timeoutMs = 5_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.unread.findIndex(match);
      if (i >= 0) return this.unread.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no matching frame within ${timeoutMs} ms; unread: ${JSON.stringify(this.unread)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async messages(n: number, timeoutMs = 5_000): Promise<Frame[]> {
    const out: Frame[] = [];
    while (out.length < n) out.push(await this.next((f) => f.type === 'message', timeoutMs));
    return out;
  }

  pending(type?: string): Frame[] {
    return this.unread.filter((f) => type === undefined || f.type === type);
  }

  private record(frames: Frame[]): void {
    for (const f of frames) {
      if (f.type === 'message' && f.msg_id) this.cursor = f.msg_id;
      this.frames.push(f);
      this.unread.push(f);
    }
    if (frames.length > 0) this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
