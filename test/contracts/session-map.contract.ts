import { randomUUID } from 'node:crypto';
import {
  REGISTRATION_BUCKETS,
  registrationBucket,
  SessionEntry,
  SessionMap,
} from '../../src/session/session-map';
import { waitFor } from '../support/wait-for';

/**
 * What every SessionMap driver promises (src/session/session-map.ts): several connections per user
 * on several nodes; entries and nodes live for a TTL that heartbeats refresh, judged by their
 * last_ping, so a crashed node's entries disappear without anyone cleaning up. Real time: the Redis
 * driver's keys expire on Redis' clock. Run by session-map.<driver>.spec.ts.
 */
export interface SessionMapHarness {
  /** A session map whose entries and nodes live `ttlMs` without a heartbeat. */
  open(ttlMs: number): Promise<SessionMap>;
  dispose(): Promise<void>;
}

const LONG_TTL = 60_000;
const SHORT_TTL = 300;

function entry(connId: string, node: string, lastPing = Date.now()): SessionEntry {
  return { connId, node, connectedAt: lastPing - 1_000, lastPing };
}

/** Unique per test, so tests never see each other's users or nodes. */
function ids(n: number, what = 'user'): string[] {
  const run = randomUUID().slice(0, 8);
  return Array.from({ length: n }, (_, i) => `${what}-${run}-${i}`);
}

const conns = (entries: SessionEntry[] | undefined): string[] => (entries ?? []).map((e) => e.connId).sort();

export function sessionMapContract(driver: string, harness: () => SessionMapHarness): void {
  describe(`SessionMap contract (${driver})`, () => {
    let h: SessionMapHarness;

    beforeAll(() => {
      h = harness();
    });

    afterAll(async () => {
      await h?.dispose();
    });

    it('keeps several connections per user on several nodes, returns them as given, and forgets removed ones', async () => {
      const sessions = await h.open(LONG_TTL);
      const [alice, bob, carol] = ids(3);
      const a1 = entry('a1', 'node-1');
      const a2 = entry('a2', 'node-2');
      await sessions.add(alice, a1);
      await sessions.add(alice, a2);
      await sessions.add(bob, entry('b1', 'node-1'));

      const found = await sessions.lookup([alice, bob, carol]);
      expect([...found.keys()].sort()).toEqual([alice, bob].sort());
      expect([...found.get(alice)!].sort((x, y) => x.connId.localeCompare(y.connId))).toEqual([a1, a2]);
      expect(conns(found.get(bob))).toEqual(['b1']);

      await sessions.remove(alice, 'a1');
      expect(conns((await sessions.lookup([alice])).get(alice))).toEqual(['a2']);
      await sessions.remove(alice, 'a2');
      await sessions.remove(alice, 'never-there');
      await sessions.remove(carol, 'never-there');
      expect((await sessions.lookup([alice])).has(alice)).toBe(false);
      await expect(sessions.ping()).resolves.toBeUndefined();
    });

    it('counts registrations per bucket of users: an add, or a touch that re-creates an entry, moves its bucket, and whoever sees it moved can read the entry', async () => {
      const sessions = await h.open(LONG_TTL);
      const [u, v] = ids(2);
      const bu = registrationBucket(u);
      const bv = registrationBucket(v);
      expect(bu).toBeGreaterThanOrEqual(0);
      expect(bu).toBeLessThan(REGISTRATION_BUCKETS);
      const [before] = await sessions.registrations([bu]);
      await sessions.add(u, entry('u1', 'n1'));
      const [afterOne] = await sessions.registrations([bu]);
      expect(afterOne).toBeGreaterThan(before);
      expect(conns((await sessions.lookup([u])).get(u))).toEqual(['u1']);
      const [vBefore] = await sessions.registrations([bv]);
      await sessions.add(v, entry('v1', 'n2'));
      expect((await sessions.registrations([bv]))[0]).toBeGreaterThan(vBefore);
      // A heartbeat of a known entry moves nothing; one that re-creates a lost entry does.
      const [steady] = await sessions.registrations([bu]);
      await sessions.touch([{ userId: u, entry: entry('u1', 'n1') }]);
      expect(await sessions.registrations([bu])).toEqual([steady]);
      await sessions.remove(u, 'u1');
      await sessions.touch([{ userId: u, entry: entry('u1', 'n1') }]);
      expect((await sessions.registrations([bu]))[0]).toBeGreaterThan(steady);
      expect(await sessions.registrations([])).toEqual([]);
    });

    it('answers an empty lookup with an empty map and tolerates repeated users', async () => {
      const sessions = await h.open(LONG_TTL);
      expect((await sessions.lookup([])).size).toBe(0);
      const [u] = ids(1);
      await sessions.add(u, entry('c1', 'node-1'));
      const found = await sessions.lookup([u, u, u]);
      expect(found.size).toBe(1);
      expect(conns(found.get(u))).toEqual(['c1']);
    });

    it('drops an entry whose last ping is older than the TTL, and one nobody touches once the TTL passed', async () => {
      const sessions = await h.open(SHORT_TTL);
      const [stale, quiet] = ids(2);
      await sessions.add(stale, entry('c1', 'crashed-node', Date.now() - SHORT_TTL - 1));
      expect((await sessions.lookup([stale])).has(stale)).toBe(false);

      await sessions.add(quiet, entry('c1', 'crashed-node'));
      expect(conns((await sessions.lookup([quiet])).get(quiet))).toEqual(['c1']);
      await waitFor(async () => !(await sessions.lookup([quiet])).has(quiet), 3_000, 'the entry to expire');
    });

    it('touch keeps entries alive while an untouched sibling expires, and re-creates entries it does not know', async () => {
      const sessions = await h.open(SHORT_TTL);
      const [u, v] = ids(2);
      await sessions.add(u, entry('live', 'node-1'));
      await sessions.add(u, entry('dead', 'crashed-node'));
      const startedAt = Date.now();
      await waitFor(
        async () => {
          await sessions.touch([{ userId: u, entry: entry('live', 'node-1') }]); // a heartbeat
          return conns((await sessions.lookup([u])).get(u)).join() === 'live';
        },
        3_000,
        'the untouched sibling filtered',
      );
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(SHORT_TTL - 50);

      // e.g. the store lost them (Redis restarted without persistence): the next heartbeat restores them.
      await sessions.touch([
        { userId: v, entry: entry('v1', 'node-1') },
        { userId: v, entry: entry('v2', 'node-2') },
      ]);
      expect(conns((await sessions.lookup([v])).get(v))).toEqual(['v1', 'v2']);
    });

    it('touch with a stale last ping does not keep an entry alive', async () => {
      const sessions = await h.open(LONG_TTL);
      const [u] = ids(1);
      await sessions.touch([
        { userId: u, entry: entry('fresh', 'node-1') },
        { userId: u, entry: entry('stale', 'node-1', Date.now() - LONG_TTL - 1_000) },
      ]);
      expect(conns((await sessions.lookup([u])).get(u))).toEqual(['fresh']);
    });

    it('lists registered nodes, forgets unregistered ones, and skips one whose heartbeats stopped', async () => {
      const registry = await h.open(LONG_TTL);
      const [n1, n2] = ids(2, 'node');
      await registry.registerNode(n1);
      await registry.registerNode(n2);
      expect(await registry.liveNodes()).toEqual(new Set([n1, n2]));
      await registry.unregisterNode(n2);
      expect(await registry.liveNodes()).toEqual(new Set([n1]));
      await registry.unregisterNode(n1);
      await registry.unregisterNode(n1);
      expect(await registry.liveNodes()).toEqual(new Set());

      const sessions = await h.open(SHORT_TTL);
      const [alive, dead] = ids(2, 'node');
      await sessions.registerNode(alive);
      await sessions.registerNode(dead);
      expect(await sessions.liveNodes()).toEqual(new Set([alive, dead]));
      await waitFor(
        async () => {
          await sessions.registerNode(alive); // heartbeat
          const live = await sessions.liveNodes();
          return live.has(alive) && !live.has(dead);
        },
        3_000,
        'the silent node skipped',
      );
    });
  });
}
