import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { NodeChannel } from '../session/node-channel';
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
