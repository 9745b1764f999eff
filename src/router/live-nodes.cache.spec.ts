import { LiveNodesCache } from './live-nodes.cache';

describe('LiveNodesCache', () => {
  let now = 0;
  let reads = 0;
  let registry = new Set(['gw-1']);
  const cache = () =>
    new LiveNodesCache(
      async () => {
        reads++;
        return new Set(registry);
      },
      1_000,
      () => now,
    );

  beforeEach(() => {
    now = 0;
    reads = 0;
    registry = new Set(['gw-1']);
  });

  it('reads the registry once per ttl, and shares a read in flight', async () => {
    const c = cache();
    expect(c.fresh()).toBeNull();
    const [a, b] = await Promise.all([c.refresh(), c.refresh()]);
    expect(reads).toBe(1);
    expect(a).toEqual(new Set(['gw-1']));
    expect(b).toBe(a);
    now = 999;
    expect(c.fresh()).toBe(a);
    now = 1_000;
    expect(c.fresh()).toBeNull();
  });

  it('re-reads at once when a session names a node it does not hold (a gateway that just joined)', async () => {
    const c = cache();
    const first = await c.refresh();
    registry.add('gw-2');
    now = 10;
    expect(await c.nodesFor(first, ['gw-1'])).toBe(first);
    expect(reads).toBe(1);
    const next = await c.nodesFor(first, ['gw-1', 'gw-2']);
    expect(reads).toBe(2);
    expect(next).toEqual(new Set(['gw-1', 'gw-2']));
    expect(c.fresh()).toBe(next);
  });

  it('keeps no result of a failed read', async () => {
    const c = new LiveNodesCache(
      () => Promise.reject(new Error('redis down')),
      1_000,
      () => now,
    );
    await expect(c.refresh()).rejects.toThrow('redis down');
    expect(c.fresh()).toBeNull();
  });

  it('readNow never joins a read already in flight, and keeps the newest result', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const results = [new Set(['gw-1']), new Set(['gw-1', 'gw-2'])];
    let reads = 0;
    const c = new LiveNodesCache(
      async () => {
        const n = reads++;
        if (n === 0) await gate; // the first read hangs until released
        return results[n];
      },
      1_000,
      () => now,
    );
    const slow = c.refresh();
    const fresh = await c.readNow(); // starts its own read instead of waiting for the slow one
    expect(fresh).toEqual(new Set(['gw-1', 'gw-2']));
    expect(c.lastRead()).toBe(fresh);
    release();
    await slow;
    expect(reads).toBe(2);
    expect(c.lastRead()).toBe(fresh); // the older read, finishing later, does not replace it
  });
});
