import { MemorySessionDriver } from '../session/drivers/memory-session.driver';
import { SessionEntry } from '../session/session-map';
import { SessionPrefetch } from './session-prefetch';

const entry = (connId: string, node = 'n1'): SessionEntry => ({
  connId,
  node,
  connectedAt: Date.now(),
  lastPing: Date.now(),
});
const conns = (m: Map<string, SessionEntry[]>, u: string) => (m.get(u) ?? []).map((e) => e.connId).sort();

describe('SessionPrefetch', () => {
  it('reuses the early lookup when no connection registered meanwhile, and looks up only users it did not ask for', async () => {
    const sessions = new MemorySessionDriver(60_000);
    await sessions.add('a', entry('a1'));
    await sessions.add('r', entry('r1'));
    const lookup = jest.spyOn(sessions, 'lookup');
    const prefetch = new SessionPrefetch(sessions, new Set(['a', 'b']));
    const { sessions: found, reused } = await prefetch.lookup(['a', 'b', 'r']);
    expect(reused).toBe(true);
    expect(conns(found, 'a')).toEqual(['a1']);
    expect(conns(found, 'r')).toEqual(['r1']); // not asked early: looked up after the commit
    expect(lookup.mock.calls.map(([users]) => [...users].sort())).toEqual([['a', 'b'], ['r']]);
  });

  it('looks up again when a connection registered between the early lookup and the commit', async () => {
    const sessions = new MemorySessionDriver(60_000);
    const prefetch = new SessionPrefetch(sessions, new Set(['a', 'b']));
    await new Promise((r) => setImmediate(r)); // the early lookup has run: b was not connected
    await sessions.add('b', entry('b1', 'n2')); // b connects "during the commit"
    const { sessions: found, reused } = await prefetch.lookup(['a', 'b']);
    expect(reused).toBe(false);
    expect(conns(found, 'b')).toEqual(['b1']);
  });

  it('falls back to a lookup after the commit when the early one failed', async () => {
    const sessions = new MemorySessionDriver(60_000);
    await sessions.add('a', entry('a1'));
    jest.spyOn(sessions, 'lookup').mockRejectedValueOnce(new Error('redis blip'));
    const prefetch = new SessionPrefetch(sessions, new Set(['a']));
    const { sessions: found, reused } = await prefetch.lookup(['a']);
    expect(reused).toBe(false);
    expect(conns(found, 'a')).toEqual(['a1']);
  });

  it('never trusts an unknown counter', async () => {
    const sessions = new MemorySessionDriver(60_000);
    jest.spyOn(sessions, 'additions').mockResolvedValue(-1);
    await sessions.add('a', entry('a1'));
    const lookup = jest.spyOn(sessions, 'lookup');
    expect((await new SessionPrefetch(sessions, new Set(['a'])).lookup(['a'])).reused).toBe(false);
    expect(lookup).toHaveBeenCalledTimes(2);
  });
});
