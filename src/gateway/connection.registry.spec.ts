import { Connection } from './connection';
import { ConnectionRegistry } from './connection.registry';

const conn = (id: string, userId: string) => ({ id, userId }) as unknown as Connection;

describe('ConnectionRegistry', () => {
  it('lists a user’s connections, tells first/last, and hands out lists a later change does not alter', () => {
    const registry = new ConnectionRegistry();
    const told: string[] = [];
    registry.observe({
      opened: (c, first) => told.push(`open ${c.id} ${first}`),
      closed: (c, last) => told.push(`close ${c.id} ${last}`),
    });
    const [a1, a2, b1] = [conn('a1', 'ann'), conn('a2', 'ann'), conn('b1', 'bob')];
    registry.add(a1);
    registry.add(a1); // twice: once
    registry.add(a2);
    registry.add(b1);
    expect(registry.size).toBe(3);
    expect([...registry.all]).toEqual([a1, a2, b1]);
    expect(registry.has(a2)).toBe(true);
    expect(registry.forUser('ann')).toEqual([a1, a2]);
    expect([...registry.users()]).toEqual(['ann', 'bob']);

    const walking = registry.forUser('ann')!;
    registry.remove(a1); // while a caller walks the list it got
    expect(walking).toEqual([a1, a2]);
    expect(registry.forUser('ann')).toEqual([a2]);
    registry.remove(a1); // twice: once
    registry.remove(a2);
    expect(registry.forUser('ann')).toBeUndefined();
    expect([...registry.users()]).toEqual(['bob']);
    expect(registry.size).toBe(1);
    expect(registry.has(a2)).toBe(false);
    expect([...registry.all]).toEqual([b1]);
    expect(told).toEqual([
      'open a1 true',
      'open a2 false',
      'open b1 true',
      'close a1 false',
      'close a2 true',
    ]);
  });
});
