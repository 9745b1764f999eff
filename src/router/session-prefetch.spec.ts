import { MemorySessionDriver } from '../session/drivers/memory-session.driver';
import { registrationBucket, SessionEntry } from '../session/session-map';
import { SessionPrefetch } from './session-prefetch';

const entry = (connId: string, node = 'n1'): SessionEntry => ({
  connId,
  node,
  connectedAt: Date.now(),
  lastPing: Date.now(),
});
const conns = (m: Map<string, SessionEntry[]>, u: string) => (m.get(u) ?? []).map((e) => e.connId).sort();

/** A user id whose registration bucket differs from every one of `others`'. */
function userOutsideBucketsOf(...others: string[]): string {
  const taken = new Set(others.map(registrationBucket));
  for (let i = 0; ; i++) if (!taken.has(registrationBucket(`other${i}`))) return `other${i}`;
}

describe('SessionPrefetch', () => {
  it('reuses the early lookup when no connection registered meanwhile, and looks up only users it did not ask for', async () => {
    const sessions = new MemorySessionDriver(60_000);
    await sessions.add('a', entry('a1'));
    await sessions.add('r', entry('r1'));
    const lookup = jest.spyOn(sessions, 'lookup');
    const prefetch = new SessionPrefetch(sessions, new Set(['a', 'b']));
    const { sessions: found, again } = await prefetch.lookup(['a', 'b', 'r']);
    expect(again).toBe(1);
    expect(conns(found, 'a')).toEqual(['a1']);
    expect(conns(found, 'r')).toEqual(['r1']); // not asked early: looked up after the commit
    expect(lookup.mock.calls.map(([users]) => [...users].sort())).toEqual([['a', 'b'], ['r']]);
  });

  it('looks up again a user whose connection registered between the early lookup and the commit', async () => {
    const sessions = new MemorySessionDriver(60_000);
    const prefetch = new SessionPrefetch(sessions, new Set(['a', 'b']));
    await new Promise((r) => setImmediate(r)); // the early lookup has run: b was not connected
    await sessions.add('b', entry('b1', 'n2')); // b connects "during the commit"
    const { sessions: found, again } = await prefetch.lookup(['a', 'b']);
    expect(again).toBeGreaterThanOrEqual(1);
    expect(conns(found, 'b')).toEqual(['b1']);
  });

  it('looks up again only the users of the buckets that moved, and forgets a connection gone meanwhile', async () => {
    const sessions = new MemorySessionDriver(60_000);
    const b = userOutsideBucketsOf('a');
    await sessions.add('a', entry('a1'));
    await sessions.add(b, entry('b1'));
    const prefetch = new SessionPrefetch(sessions, new Set(['a', b]));
    await new Promise((r) => setImmediate(r));
    await sessions.remove('a', 'a1');
    await sessions.add('a', entry('a2', 'n2')); // a moved to another node during the commit
    const lookup = jest.spyOn(sessions, 'lookup');
    const { sessions: found, again } = await prefetch.lookup(['a', b]);
    expect(again).toBe(1);
    expect(lookup.mock.calls).toEqual([[['a']]]);
    expect(conns(found, 'a')).toEqual(['a2']);
    expect(conns(found, b)).toEqual(['b1']);
  });

  it('falls back to a lookup after the commit when the early one failed', async () => {
    const sessions = new MemorySessionDriver(60_000);
    await sessions.add('a', entry('a1'));
    jest.spyOn(sessions, 'lookup').mockRejectedValueOnce(new Error('redis blip'));
    const prefetch = new SessionPrefetch(sessions, new Set(['a']));
    const { sessions: found, again } = await prefetch.lookup(['a']);
    expect(again).toBe(1);
    expect(conns(found, 'a')).toEqual(['a1']);
  });
});
