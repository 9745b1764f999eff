/**
 * Where the client keeps its delivery cursor between runs. `get` is called once, before the first
 * connection; `set` after every delivery (the client serializes and coalesces calls, so an async
 * implementation never sees two writes at once and is not called once per message under load).
 */
export interface CursorStorage {
  get(): string | undefined | Promise<string | undefined>;
  set(cursor: string): void | Promise<void>;
}

/** The default: survives reconnects, not a page reload or process restart. */
export function memoryStorage(initial?: string): CursorStorage {
  let cursor = initial;
  return {
    get: () => cursor,
    set: (next) => {
      cursor = next;
    },
  };
}

/** The subset of the Web Storage API we use (so tests and non-browser hosts can pass their own). */
export interface WebStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** Browser storage: the cursor survives reloads. Pass `store` to use sessionStorage or a substitute. */
export function localStorageStorage(key: string, store?: WebStorageLike): CursorStorage {
  const target = store ?? (globalThis as unknown as { localStorage?: WebStorageLike }).localStorage;
  if (!target) throw new TypeError('localStorageStorage: no localStorage in this environment; pass `store`');
  return {
    get: () => target.getItem(key) ?? undefined,
    set: (cursor) => target.setItem(key, cursor),
  };
}

/**
 * The file-system functions fileStorage needs; `import * as fs from 'node:fs/promises'` fits.
 * Injected rather than imported so the SDK source stays free of Node-only modules.
 */
export interface FileSystemLike {
  readFile(path: string, encoding: 'utf8'): Promise<string>;
  writeFile(path: string, data: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
}

/**
 * Node storage: the cursor in a small file. Writes go to `<path>.tmp` and are renamed over the
 * file, so a crash mid-write leaves the previous cursor rather than a torn one.
 */
export function fileStorage(path: string, fs: FileSystemLike): CursorStorage {
  return {
    async get() {
      try {
        return (await fs.readFile(path, 'utf8')).trim() || undefined;
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ENOENT') return undefined; // first run
        throw err;
      }
    },
    async set(cursor) {
      await fs.writeFile(`${path}.tmp`, cursor);
      await fs.rename(`${path}.tmp`, path);
    },
  };
}

/**
 * Serializes writes to a CursorStorage: at most one `set` in flight; cursors that arrive meanwhile
 * collapse into one follow-up write of the newest. This keeps an async file storage from
 * interleaving writes (an older cursor landing last) and from doing one write per message.
 */
export class CursorWriter {
  private latest: string | undefined;
  private written: string | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly storage: CursorStorage,
    private readonly onError: (err: unknown) => void,
  ) {}

  write(cursor: string): void {
    this.latest = cursor;
    this.kick();
  }

  /** Resolves once every cursor passed to write() so far (and any written in the same tick) is stored or failed. */
  async flush(): Promise<void> {
    // Yield first: close() may be called from inside a message handler, and the cursor of that
    // message is handed to write() only after the handler returns (later in the same tick).
    await Promise.resolve();
    while (this.running) await this.running;
  }

  private kick(): void {
    if (this.running || this.latest === undefined || this.latest === this.written) return;
    // Re-check after each round: a write() may land between the loop's last check and this callback.
    // After a failure, wait for the next write() instead of retrying in a tight loop.
    this.running = this.drain().then((ok) => {
      this.running = undefined;
      if (ok) this.kick();
    });
  }

  private async drain(): Promise<boolean> {
    while (this.latest !== undefined && this.latest !== this.written) {
      const cursor = this.latest;
      try {
        await this.storage.set(cursor);
        this.written = cursor;
      } catch (err) {
        this.onError(err);
        return false;
      }
    }
    return true;
  }
}
