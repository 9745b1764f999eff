import { randomUUID } from 'node:crypto';
import { PresenceStore } from '../../src/presence/presence.store';

/**
 * What every PresenceStore driver promises (src/presence/presence.store.ts), on a clock the test
 * moves: a status flips once cluster-wide and each flip is returned to exactly one caller with a
 * growing version; offline waits for the grace (closed) or the TTL (crashed node); watchers and
 * node refreshes expire with the TTL; typing starts are throttled per user and conversation.
 * Run by presence-store.<driver>.spec.ts.
 */
export const CONTRACT_TTL_MS = 1_000;

export interface PresenceStoreHarness {
  /** A store on a network of its own (shared by every call), reading time from `now`. */
  store(now: () => number): Promise<PresenceStore>;
  dispose(): Promise<void>;
}

export function presenceStoreContract(driver: string, harness: () => PresenceStoreHarness): void {
  describe(`PresenceStore contract (${driver})`, () => {
    let h: PresenceStoreHarness;
    let clock = 0;
    const now = () => clock;
    let store: PresenceStore;
    let other: PresenceStore; // a second node's view of the same store
    const id = (name: string) => `${name}-${randomUUID().slice(0, 8)}`;
    /** Sweeps also find what earlier tests left behind on the shared store: keep only this test's users. */
    const sweepOf = async (s: PresenceStore, users: string[]) =>
      (await s.sweep(1_000)).filter((f) => users.includes(f.userId));

    beforeAll(() => {
      h = harness();
    });
    beforeEach(async () => {
      clock = 1_800_000_000_000 + Math.floor(Math.random() * 1e9);
      store = await h.store(now);
      other = await h.store(now);
    });
    afterAll(() => h?.dispose());

    it('the first connection anywhere flips a user online once, told to the live watchers', async () => {
      const [ann, n1, n2, w] = [id('ann'), id('n1'), id('n2'), id('w')];
      expect(await store.watch(w, [ann])).toEqual(new Map([[ann, { online: false, version: 0 }]]));
      const [flip] = await store.connected(n1, [ann]);
      expect(flip).toMatchObject({ userId: ann, online: true, watchers: [w] });
      expect(flip.version).toBeGreaterThan(0);
      expect(await other.connected(n2, [ann])).toEqual([]);
      expect(await store.connected(n1, [ann])).toEqual([]); // a refresh
      expect((await other.status([ann])).get(ann)).toEqual({ online: true, version: flip.version });
    });

    it('offline only after the grace, once, with a higher version; a reconnect within the grace does not flap', async () => {
      const [ann, bob, n1, n2] = [id('ann'), id('bob'), id('n1'), id('n2')];
      const [on] = await store.connected(n1, [ann, bob]).then((c) => c.filter((x) => x.userId === ann));
      await store.left(n1, [ann, bob], 500);
      clock += 100;
      await other.connected(n2, [bob]); // bob switched node within the grace
      clock += 399;
      expect(await sweepOf(store, [ann, bob])).toEqual([]);
      clock += 2;
      const swept = await Promise.all([sweepOf(store, [ann, bob]), sweepOf(other, [ann, bob])]);
      const flips = swept.flat();
      expect(flips).toHaveLength(1);
      expect(flips[0]).toMatchObject({ userId: ann, online: false });
      expect(flips[0].version).toBeGreaterThan(on.version);
      expect(await sweepOf(store, [ann, bob])).toEqual([]);
      expect((await store.status([ann, bob])).get(bob)?.online).toBe(true);
      const [back] = await store.connected(n1, [ann]);
      expect(back.version).toBeGreaterThan(flips[0].version);
    });

    it("a node that stops refreshing (crash) loses its users after the TTL; another node's refresh keeps them", async () => {
      const [ann, bob, dead, live] = [id('ann'), id('bob'), id('dead'), id('live')];
      await store.connected(dead, [ann, bob]);
      await other.connected(live, [bob]);
      clock += CONTRACT_TTL_MS / 2;
      await other.connected(live, [bob]); // live's heartbeat; dead's never comes
      clock += CONTRACT_TTL_MS / 2 + 1;
      const flips = await sweepOf(store, [ann, bob]);
      expect(flips.map((f) => [f.userId, f.online])).toEqual([[ann, false]]);
      clock += CONTRACT_TTL_MS / 4;
      expect(await sweepOf(store, [ann, bob])).toEqual([]); // bob re-armed to live's refresh + TTL
      expect((await store.status([bob])).get(bob)?.online).toBe(true);
    });

    it('watchers expire with the TTL unless refreshed, and go at once when they unwatch', async () => {
      const [ann, bob, kept, lapsed, gone, n] = [id('ann'), id('bob'), id('k'), id('l'), id('g'), id('n')];
      await store.watch(kept, [ann, bob]);
      await store.watch(lapsed, [ann]);
      await store.watch(gone, [ann]);
      await store.unwatch(gone, [ann]);
      clock += CONTRACT_TTL_MS - 10;
      await store.watch(kept, [ann]); // kept's heartbeat
      clock += 20;
      const [flip] = await store.connected(n, [ann]);
      expect(flip.watchers).toEqual([kept]);
    });

    it('typing: one start per user and conversation per interval; stop frees it; routes to live nodes only', async () => {
      const [ann, bob, cy, conv, n1, n2, dead] = [
        id('ann'),
        id('bob'),
        id('cy'),
        id('c'),
        id('n1'),
        id('n2'),
        id('d'),
      ];
      await store.connected(dead, [cy]);
      clock += CONTRACT_TTL_MS + 1;
      await store.connected(n1, [bob]);
      await other.connected(n2, [bob]);
      const routes = await store.typingRoute(ann, conv, 'start', [bob, cy], 2_000);
      expect(routes && Object.fromEntries(routes)).toEqual({ [n1]: [bob], [n2]: [bob] });
      expect(await other.typingRoute(ann, conv, 'start', [bob], 2_000)).toBeNull();
      expect(await other.typingRoute(ann, id('c2'), 'start', [bob], 2_000)).not.toBeNull();
      expect(await other.typingRoute(ann, conv, 'stop', [bob], 2_000)).not.toBeNull();
      expect(await store.typingRoute(ann, conv, 'start', [bob], 2_000)).not.toBeNull();
    });
  });
}
