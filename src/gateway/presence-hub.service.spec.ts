import { PresenceEvents } from '../bus/presence-events';
import { loadConfig } from '../config/app-config';
import { Config } from '../config/config.module';
import { BuiltinDirectoryDriver } from '../directory/drivers/builtin-directory.driver';
import { MemoryDirectoryStoreDriver } from '../directory/drivers/memory-directory-store.driver';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryPresenceDriver } from '../presence/drivers/memory-presence.driver';
import { MembershipCache } from '../presence/membership.cache';
import { EphemeralBatch, NodeChannel } from '../session/node-channel';
import { Connection } from './connection';
import { ConnectionRegistry } from './connection.registry';
import { PresenceHub } from './presence-hub.service';
import { TypingService } from './typing.service';

/** A node channel of one node that hands batches over at once, or loses them while `dropping`. */
class LossyChannel extends NodeChannel {
  dropping = false;
  lost = 0;
  private listener: ((b: EphemeralBatch) => void) | null = null;
  override listenEphemeral(listener: ((b: EphemeralBatch) => void) | null): void {
    this.listener = listener;
  }
  override async publishEphemeral(batches: Map<string, EphemeralBatch>): Promise<void> {
    for (const batch of batches.values()) {
      if (this.dropping) this.lost++;
      else this.listener?.(batch);
    }
  }
  async publish(): Promise<void> {}
  async subscribe(): Promise<void> {}
  async unsubscribe(): Promise<void> {}
  async ping(): Promise<void> {}
}

interface FakeConn {
  conn: Connection;
  frames: Record<string, unknown>[];
}

function fakeConnection(id: string, userId: string): FakeConn {
  const frames: Record<string, unknown>[] = [];
  const conn = {
    id,
    userId,
    state: 'open',
    sendRaw: (text: string) => frames.push(JSON.parse(text) as Record<string, unknown>),
    sendError: (code: string) => frames.push({ type: 'error', code }),
  } as unknown as Connection;
  return { conn, frames };
}

const flush = () => new Promise((r) => setImmediate(r));

async function setup() {
  const config = loadConfig({ NODE_ENV: 'test', PRESENCE_GRACE_MS: '0', SESSION_TTL_MS: '60000' }) as Config;
  const directory = new MemoryDirectoryStoreDriver();
  await directory.put('c', ['ann', 'bob']);
  const membership = new MembershipCache(new BuiltinDirectoryDriver(directory), 0);
  const store = new MemoryPresenceDriver(config.sessionTtlMs);
  const channel = new LossyChannel();
  const registry = new ConnectionRegistry();
  const typing = new TypingService(config, membership, store, channel, registry);
  // The event stream's online/offline records (PresenceEvents), as written.
  const streamed: string[] = [];
  const events = {
    presenceChanged: (userId: string, status: string) => {
      streamed.push(`${userId}:${status}`);
      return Promise.resolve();
    },
  } as unknown as PresenceEvents;
  const hub = new PresenceHub(
    config,
    store,
    membership,
    channel,
    registry,
    typing,
    events,
    new MetricsService(),
  );
  hub.onApplicationBootstrap();
  const refresh = () => (hub as unknown as { refresh(): Promise<void> }).refresh();
  const presenceFrames = (c: FakeConn) => c.frames.filter((f) => f.type === 'presence');
  return { hub, channel, registry, refresh, presenceFrames, config, streamed };
}

describe('PresenceHub', () => {
  it('a change whose publish was lost reaches the subscriber with the next heartbeat refresh, once', async () => {
    const { hub, channel, registry, refresh, presenceFrames, streamed } = await setup();
    try {
      const ann = fakeConnection('a1', 'ann');
      registry.add(ann.conn);
      hub.handle(ann.conn, { type: 'presence.subscribe', payload: { conversation_id: 'c' } });
      await flush();
      await flush();
      expect(presenceFrames(ann)).toEqual([
        { type: 'presence', payload: { conversation_id: 'c', online: ['ann'] } },
      ]);

      channel.dropping = true;
      registry.add(fakeConnection('b1', 'bob').conn);
      await flush();
      expect(channel.lost).toBe(1);
      expect(presenceFrames(ann)).toHaveLength(1);
      channel.dropping = false;

      await refresh();
      await refresh();
      expect(presenceFrames(ann).slice(1)).toEqual([
        { type: 'presence', payload: { conversation_id: 'c', user_id: 'bob', status: 'online' } },
      ]);
      // Each flip wrote one record of the event stream, the lost channel publish notwithstanding.
      expect(streamed).toEqual(['ann:online', 'bob:online']);
    } finally {
      hub.onApplicationShutdown();
    }
  });

  it('drops a change older than what the subscriber saw, and sends nothing after unsubscribe or close', async () => {
    const { hub, channel, registry, presenceFrames } = await setup();
    try {
      const ann = fakeConnection('a1', 'ann');
      registry.add(ann.conn);
      hub.handle(ann.conn, { type: 'presence.subscribe', payload: { conversation_id: 'c' } });
      await flush();
      await flush();
      const deliver = (batch: EphemeralBatch) => channel.publishEphemeral(new Map([['n', batch]]));
      await deliver({
        kind: 'ephemeral',
        presence: [{ u: 'bob', on: true, v: Number.MAX_SAFE_INTEGER - 1 }],
      });
      await deliver({ kind: 'ephemeral', presence: [{ u: 'bob', on: false, v: 5 }] }); // late and older
      expect(presenceFrames(ann).map((f) => (f.payload as { status?: string }).status)).toEqual([
        undefined, // the snapshot
        'online',
      ]);
      hub.handle(ann.conn, { type: 'presence.unsubscribe', payload: { conversation_id: 'c' } });
      await deliver({ kind: 'ephemeral', presence: [{ u: 'bob', on: false, v: Number.MAX_SAFE_INTEGER }] });
      expect(presenceFrames(ann)).toHaveLength(2);
      registry.remove(ann.conn);
    } finally {
      hub.onApplicationShutdown();
    }
  });

  it('an unsubscribe right behind the subscribe wins: no snapshot, nothing watched', async () => {
    const { hub, registry, presenceFrames, refresh } = await setup();
    try {
      const ann = fakeConnection('a1', 'ann');
      registry.add(ann.conn);
      hub.handle(ann.conn, { type: 'presence.subscribe', payload: { conversation_id: 'c' } });
      hub.handle(ann.conn, { type: 'presence.unsubscribe', payload: { conversation_id: 'c' } });
      await flush();
      await flush();
      registry.add(fakeConnection('b1', 'bob').conn);
      await flush();
      await refresh();
      expect(presenceFrames(ann)).toEqual([]);
    } finally {
      hub.onApplicationShutdown();
    }
  });

  it('refuses a subscription over the per-connection cap with rate_limited', async () => {
    const config = loadConfig({ NODE_ENV: 'test', PRESENCE_MAX_SUBSCRIPTIONS: '1' }) as Config;
    const directory = new MemoryDirectoryStoreDriver();
    await directory.put('c1', ['ann']);
    await directory.put('c2', ['ann']);
    const membership = new MembershipCache(new BuiltinDirectoryDriver(directory), 0);
    const store = new MemoryPresenceDriver(config.sessionTtlMs);
    const channel = new LossyChannel();
    const registry = new ConnectionRegistry();
    const typing = new TypingService(config, membership, store, channel, registry);
    const hub = new PresenceHub(
      config,
      store,
      membership,
      channel,
      registry,
      typing,
      { presenceChanged: () => Promise.resolve() } as unknown as PresenceEvents,
      new MetricsService(),
    );
    const ann = fakeConnection('a1', 'ann');
    registry.add(ann.conn);
    hub.handle(ann.conn, { type: 'presence.subscribe', payload: { conversation_id: 'c1' } });
    await flush();
    await flush();
    hub.handle(ann.conn, { type: 'presence.subscribe', payload: { conversation_id: 'c2' } });
    hub.handle(ann.conn, { type: 'presence.subscribe', payload: { conversation_id: 'c1' } }); // a refresh: allowed
    await flush();
    await flush();
    expect(ann.frames.map((f) => f.type === 'error' && f.code).filter(Boolean)).toEqual(['rate_limited']);
    expect(ann.frames.filter((f) => f.type === 'presence')).toHaveLength(2);
  });
});
