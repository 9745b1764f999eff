import { Logger } from '@nestjs/common';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryChannelDriver } from '../session/drivers/memory-channel.driver';
import { NodeChannel, PushBatch } from '../session/node-channel';
import { SessionMap } from '../session/session-map';
import { Connection } from './connection';
import { ConnectionRegistry } from './connection.registry';
import { EgressService } from './egress.service';

function fakeConnection(userId: string, onResync: () => Promise<void>): Connection {
  return { userId, resync: onResync } as unknown as Connection;
}

describe('EgressService resync', () => {
  it('refills every connection, a bounded number at a time, and runs a resync requested meanwhile once more', async () => {
    const registry = new ConnectionRegistry();
    let running = 0;
    let peak = 0;
    let calls = 0;
    const gates: (() => void)[] = [];
    for (let i = 0; i < 300; i++) {
      registry.add(
        fakeConnection(`u${i}`, () => {
          calls++;
          running++;
          peak = Math.max(peak, running);
          return new Promise<void>((resolve) =>
            gates.push(() => {
              running--;
              resolve();
            }),
          );
        }),
      );
    }
    const egress = new EgressService(
      { nodeId: 'n' } as Config,
      {} as NodeChannel,
      {} as SessionMap,
      registry,
      new MetricsService(),
    );
    egress.onResync();
    egress.onResync(); // queued: must start over once the first pass is done
    egress.onResync(); // folded into the queued one
    for (let rounds = 0; calls < 600 || running > 0; rounds++) {
      if (rounds > 10_000) throw new Error(`stuck at ${calls} calls`);
      gates.splice(0).forEach((open) => open());
      await new Promise((r) => setImmediate(r));
    }
    expect(calls).toBe(600);
    expect(peak).toBe(64);
  });
});

describe('EgressService containment', () => {
  const batch = (users: string[], body: unknown = 'hi'): PushBatch => ({
    epoch: 'e',
    envelopes: [{ id: 'm1', conversation_id: 'c', from: 'a', ts: 1, body }],
    deliveries: users.map((u) => ({ u, s: 1, e: 0 })),
  });

  function setup() {
    const registry = new ConnectionRegistry();
    const metrics = new MetricsService();
    const egress = new EgressService(
      { nodeId: 'n' } as Config,
      {} as NodeChannel,
      {} as SessionMap,
      registry,
      metrics,
    );
    const conn = (userId: string, push: (seq: number, frame: string) => void) => {
      const c = {
        userId,
        closed: [] as number[],
        cork: () => undefined,
        uncork: () => undefined,
        push,
        close: (code: number) => c.closed.push(code),
        resync: async () => undefined,
      };
      registry.add(c as unknown as Connection);
      return c;
    };
    const contained = async (where: string) =>
      (await metrics.contained.get()).values.find((v) => v.labels.where === where)?.value ?? 0;
    return { egress, conn, contained };
  }

  it('a connection whose push throws is closed 1011; the others still get the batch', async () => {
    const { egress, conn, contained } = setup();
    const logged = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const got: string[] = [];
    const bad = conn('u1', () => {
      throw new Error('boom');
    });
    conn('u2', (_s, frame) => got.push(frame));
    expect(() => egress.onBatch(batch(['u1', 'u2']))).not.toThrow();
    expect(bad.closed).toEqual([1011]);
    expect(got).toHaveLength(1);
    expect(await contained('egress.connection')).toBe(1);
    // The line names the message and the user (the connection id too, when the connection has one).
    expect(logged).toHaveBeenCalledWith(expect.stringContaining('egress.connection'), {
      msg: 'm1',
      conn: undefined,
      user: 'u1',
    });
    logged.mockRestore();
  });

  it('a batch that cannot be handled is contained and turns into a resync', async () => {
    const { egress, conn, contained } = setup();
    let resyncs = 0;
    const c = conn('u1', () => undefined);
    c.resync = async () => void resyncs++;
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic; // JSON.stringify throws
    expect(() => egress.onBatch(batch(['u1'], cyclic))).not.toThrow();
    expect(await contained('egress.batch')).toBe(1);
    for (let i = 0; i < 20 && resyncs === 0; i++) await new Promise((r) => setImmediate(r));
    expect(resyncs).toBe(1);
  });
});

describe('MemoryChannelDriver', () => {
  it('a subscriber that throws does not escape the timer callback', async () => {
    const channel = new MemoryChannelDriver();
    let calls = 0;
    await channel.subscribe('n', {
      onBatch: () => {
        calls++;
        throw new Error('boom');
      },
      onResync: () => undefined,
    });
    const uncaught: unknown[] = [];
    const listener = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', listener);
    try {
      await channel.publish(new Map([['n', { epoch: 'e', envelopes: [], deliveries: [] }]]));
      for (let i = 0; i < 20 && calls === 0; i++) await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('uncaughtException', listener);
    }
    expect(calls).toBe(1);
    expect(uncaught).toEqual([]);
  });
});
