import WebSocket from 'ws';

export interface Frame {
  type: string;
  msg_id?: string;
  payload?: Record<string, unknown> & { code?: string; id?: string; body?: unknown; recovered?: boolean };
}

/**
 * A raw protocol client for tests: records every frame and lets a test wait for the next one that
 * matches, with a deadline. Frames are consumed in order, so a test can assert what came between.
 */
export class TestClient {
  readonly frames: Frame[] = [];
  private unread: Frame[] = [];
  closeCode: number | null = null;
  closeReason = '';
  private readonly closed: Promise<void>;
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as Frame;
      this.frames.push(frame);
      this.unread.push(frame);
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        this.wake();
        resolve();
      }),
    );
  }

  static open(url: string, opts: WebSocket.ClientOptions = {}): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, opts);
      const client = new TestClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)),
      );
      ws.once('error', reject);
    });
  }

  /** Opens and completes the handshake; resolves with the welcome frame. */
  static async connect(url: string, lastMsgId?: string): Promise<{ client: TestClient; welcome: Frame }> {
    const client = await TestClient.open(url);
    client.send({ type: 'hello', payload: lastMsgId === undefined ? {} : { last_msg_id: lastMsgId } });
    const welcome = await client.next((f) => f.type === 'welcome');
    return { client, welcome };
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Takes the oldest unread frame matching `match`; other frames stay unread for later calls. */
  async next(match: (f: Frame) => boolean = () => true, timeoutMs = 5_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.unread.findIndex(match);
      if (i >= 0) return this.unread.splice(i, 1)[0];
      if (this.closeCode !== null)
        throw new Error(`socket closed (${this.closeCode}) while waiting for a frame`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames.slice(-5))}`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Collects `n` message frames (in arrival order). */
  async messages(n: number, timeoutMs = 5_000): Promise<Frame[]> {
    const out: Frame[] = [];
    while (out.length < n) out.push(await this.next((f) => f.type === 'message', timeoutMs));
    return out;
  }

  /** Sends a `send` frame and waits for its ack (or error). */
  async sendMessage(conversationId: string, body: unknown, ref: string, timeoutMs = 5_000): Promise<Frame> {
    this.send({ type: 'send', msg_id: ref, payload: { conversation_id: conversationId, body } });
    return this.next(
      (f) => (f.type === 'ack' && f.payload?.ref === ref) || (f.type === 'error' && f.msg_id === ref),
      timeoutMs,
    );
  }

  /** Unread frames of a type (e.g. to assert nothing else arrived). */
  pending(type?: string): Frame[] {
    return this.unread.filter((f) => type === undefined || f.type === type);
  }

  waitClosed(timeoutMs = 5_000): Promise<number> {
    return Promise.race([
      this.closed.then(() => this.closeCode!),
      new Promise<number>((_, reject) =>
        setTimeout(() => reject(new Error('socket did not close in time')), timeoutMs).unref(),
      ),
    ]);
  }

  close(): void {
    this.ws.close();
  }

  terminate(): void {
    this.ws.terminate();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
