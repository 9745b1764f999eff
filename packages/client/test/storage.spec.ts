import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CursorWriter, fileStorage, localStorageStorage, memoryStorage } from '../src/storage';

/** A promise the test resolves by hand, to hold a storage write "in flight". */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('memoryStorage', () => {
  it('starts empty (or with the given cursor) and keeps the last set', () => {
    const s = memoryStorage();
    expect(s.get()).toBeUndefined();
    void s.set('a');
    void s.set('b');
    expect(s.get()).toBe('b');
    expect(memoryStorage('x').get()).toBe('x');
  });
});

describe('localStorageStorage', () => {
  it('reads and writes under its key', () => {
    const map = new Map<string, string>();
    const store = {
      getItem: (k: string) => map.get(k) ?? null,
      setItem: (k: string, v: string) => void map.set(k, v),
    };
    const s = localStorageStorage('relay.cursor', store);
    expect(s.get()).toBeUndefined();
    void s.set('E-5');
    expect(map.get('relay.cursor')).toBe('E-5');
    expect(s.get()).toBe('E-5');
  });

  it('fails fast where there is no localStorage', () => {
    expect(() => localStorageStorage('k')).toThrow(TypeError);
  });
});

describe('fileStorage', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'relay-client-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('returns undefined before the first write, then the written cursor', async () => {
    const s = fileStorage(join(dir, 'cursor'), fsp);
    await expect(s.get()).resolves.toBeUndefined();
    await s.set('E-000000000042');
    await expect(readFile(join(dir, 'cursor'), 'utf8')).resolves.toBe('E-000000000042');
    await expect(fileStorage(join(dir, 'cursor'), fsp).get()).resolves.toBe('E-000000000042');
  });

  it('ignores surrounding whitespace (a hand-edited file)', async () => {
    await writeFile(join(dir, 'cursor'), 'E-1\n');
    await expect(fileStorage(join(dir, 'cursor'), fsp).get()).resolves.toBe('E-1');
  });

  it('reports errors other than a missing file', async () => {
    await expect(fileStorage(dir, fsp).get()).rejects.toMatchObject({ code: 'EISDIR' });
  });
});

describe('CursorWriter', () => {
  it('keeps one write in flight and coalesces the rest into the newest cursor', async () => {
    const calls: string[] = [];
    const gates: ReturnType<typeof deferred>[] = [];
    const writer = new CursorWriter(
      {
        get: () => undefined,
        set: (c) => {
          calls.push(c);
          const d = deferred();
          gates.push(d);
          return d.promise;
        },
      },
      () => undefined,
    );
    writer.write('c1');
    writer.write('c2');
    writer.write('c3');
    expect(calls).toEqual(['c1']); // c2, c3 wait
    gates[0].resolve();
    await Promise.resolve();
    await Promise.resolve();
    expect(calls).toEqual(['c1', 'c3']); // c2 superseded
    const flushed = writer.flush();
    gates[1].resolve();
    await flushed;
    expect(calls).toEqual(['c1', 'c3']);
  });

  it('flush() also waits for a write issued later in the same tick', async () => {
    const stored: string[] = [];
    const writer = new CursorWriter(
      { get: () => undefined, set: async (c) => void stored.push(c) },
      () => undefined,
    );
    const flushed = writer.flush();
    writer.write('late');
    await flushed;
    expect(stored).toEqual(['late']);
  });

  it('reports a failed write and retries with the next cursor', async () => {
    const errors: unknown[] = [];
    let fail = true;
    const stored: string[] = [];
    const writer = new CursorWriter(
      {
        get: () => undefined,
        set: (c) => {
          if (fail) throw new Error('disk full');
          stored.push(c);
        },
      },
      (e) => errors.push(e),
    );
    writer.write('c1');
    await writer.flush();
    expect(errors).toHaveLength(1);
    expect(stored).toEqual([]);
    fail = false;
    writer.write('c2');
    await writer.flush();
    expect(stored).toEqual(['c2']);
  });
});
