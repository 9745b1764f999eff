import { IngressMessage } from '../../protocol/envelope';
import { BusBatch } from '../message-bus';
import { MemoryBusDriver } from './memory-bus.driver';

const msg = (conversation_id: string, i: number): IngressMessage => ({
  id: `${conversation_id}-${i}`,
  conversation_id,
  from: 'a',
  ts: i,
  body: i,
  ref: `r${i}`,
});

async function until(cond: () => boolean, ms = 2_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('MemoryBusDriver', () => {
  it('delivers per-conversation order and redelivers a batch whose handler threw', async () => {
    const bus = new MemoryBusDriver(4, 500, 5);
    const seen: string[] = [];
    let failOnce = true;
    await bus.consume(async (b: BusBatch) => {
      if (failOnce && b.messages.some((m) => m.id === 'x-3')) {
        failOnce = false;
        throw new Error('outbox down');
      }
      seen.push(...b.messages.map((m) => m.id));
    });
    for (let i = 0; i < 10; i++) {
      await bus.publish(msg('x', i));
      await bus.publish(msg('y', i));
    }
    await until(() => new Set(seen).size === 20);
    for (const c of ['x', 'y']) {
      const order = seen.filter((id) => id.startsWith(c));
      const firsts = [...new Set(order)];
      expect(firsts).toEqual(Array.from({ length: 10 }, (_, i) => `${c}-${i}`));
    }
    expect(failOnce).toBe(false);
    await bus.close();
  });

  it('rejects publishes while unavailable', async () => {
    const bus = new MemoryBusDriver(1);
    bus.setAvailable(false);
    await expect(bus.publish(msg('x', 1))).rejects.toThrow('unavailable');
    await expect(bus.ping()).rejects.toThrow();
  });
});

describe('MemoryBusDriver dead letters', () => {
  it('keeps quarantined messages with reason and partition, bounded to the newest entries', async () => {
    const bus = new MemoryBusDriver(2, 500, 5, 3);
    for (let i = 1; i <= 5; i++) await bus.deadLetter(msg('x', i), `unserializable: ${i}`, i % 2);
    const kept = bus.deadLetters();
    expect(kept.map((d) => [(d.message as IngressMessage).id, d.reason, d.partition])).toEqual([
      ['x-3', 'unserializable: 3', 1],
      ['x-4', 'unserializable: 4', 0],
      ['x-5', 'unserializable: 5', 1],
    ]);
    expect(kept.every((d) => typeof d.at === 'number' && d.at > 0)).toBe(true);
  });

  it('fails a dead-letter write while unavailable (the router treats it as an outage)', async () => {
    const bus = new MemoryBusDriver(1);
    bus.setAvailable(false);
    await expect(bus.deadLetter(msg('x', 1), 'r', 0)).rejects.toThrow('unavailable');
    expect(bus.deadLetters()).toHaveLength(0);
  });
});
