/** A Server-Sent Events reader over fetch (the console's tail): waits for events with a deadline. */
export interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

export class SseClient {
  readonly events: SseEvent[] = [];
  private waiters: (() => void)[] = [];
  private ended = false;

  private constructor(private readonly abort: AbortController) {}

  /** Opens the stream; rejects with the status and body when it is not a 200 event stream. */
  static async open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const abort = new AbortController();
    const res = await fetch(url, { headers, signal: abort.signal });
    if (res.status !== 200) throw new Error(`SSE refused: ${res.status} ${await res.text()}`);
    const client = new SseClient(abort);
    void client.pump(res.body!.pipeThrough(new TextDecoderStream()).getReader());
    return client;
  }

  private async pump(reader: ReadableStreamDefaultReader<string>): Promise<void> {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          let data = '';
          for (const row of block.split('\n')) {
            if (row.startsWith('event: ')) event = row.slice(7);
            else if (row.startsWith('data: ')) data += row.slice(6);
          }
          if (data) this.events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
          this.wake();
        }
      }
    } catch {
      // aborted by close()
    } finally {
      this.ended = true;
      this.wake();
    }
  }

  async next(match: (e: SseEvent) => boolean, timeoutMs = 5_000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (this.ended || left <= 0) {
        throw new Error(
          `${this.ended ? 'stream ended' : `no matching event within ${timeoutMs} ms`}; got ${JSON.stringify(this.events.slice(-5))}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.abort.abort();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
