import { MemoryBusDriver } from './drivers/memory-bus.driver';
import { RawStreamRecord } from '../protocol/stream-records';
import { PresenceEvents } from './presence-events';

describe('PresenceEvents (the presence hook)', () => {
  it('writes a presence record that stream groups read and the router skips', async () => {
    const bus = new MemoryBusDriver(4);
    const routed: unknown[] = [];
    await bus.consume(async (b) => void routed.push(...b.messages));
    const seen: RawStreamRecord[] = [];
    const sub = await bus.consumeAsGroup('g', async (b) => void seen.push(...b.records));
    await new PresenceEvents(bus).presenceChanged('alice', 'online', 1_700_000_000_000);
    const deadline = Date.now() + 2_000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([
      expect.objectContaining({
        kind: 'presence',
        schema_version: 1,
        user_id: 'alice',
        status: 'online',
        ts: 1_700_000_000_000,
      }),
    ]);
    expect(routed).toEqual([]);
    await sub.stop();
    await bus.close();
  });
});
