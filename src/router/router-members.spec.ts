import { ConversationDirectory } from '../directory/conversation-directory';
import { ROUTER_MEMBERS_TTL_MS, RouterMembers } from './router-members';

class CountingDirectory extends ConversationDirectory {
  readonly lists = new Map<string, string[]>();
  calls: string[][] = [];
  async members(ids: string[]): Promise<Map<string, string[] | null>> {
    this.calls.push(ids);
    return new Map(ids.map((id) => [id, this.lists.get(id) ?? null]));
  }
  async ping(): Promise<void> {}
}

describe('RouterMembers', () => {
  let now = 1_000;
  const clock = () => now;

  it('reads a conversation once until a membership record (forget) or the TTL says to read it again', async () => {
    const dir = new CountingDirectory();
    dir.lists.set('c1', ['a', 'b']);
    const m = new RouterMembers(dir, true, clock);
    expect(await m.members(['c1', 'gone'])).toEqual(
      new Map<string, string[] | null>([
        ['c1', ['a', 'b']],
        ['gone', null],
      ]),
    );
    dir.lists.set('c1', ['a', 'b', 'c']);
    expect((await m.members(['c1', 'gone'])).get('c1')).toEqual(['a', 'b']);
    expect(dir.calls).toHaveLength(1);

    m.forget('c1');
    expect((await m.members(['c1', 'gone'])).get('c1')).toEqual(['a', 'b', 'c']);
    expect(dir.calls[1]).toEqual(['c1']); // only what was forgotten is read again

    dir.lists.set('c1', ['z']);
    now += ROUTER_MEMBERS_TTL_MS;
    expect((await m.members(['c1'])).get('c1')).toEqual(['z']);
    expect(dir.calls).toHaveLength(3);
  });

  it('keeps nothing when disabled (an HTTP directory, which writes no membership records)', async () => {
    const dir = new CountingDirectory();
    dir.lists.set('c1', ['a']);
    const m = new RouterMembers(dir, false, clock);
    await m.members(['c1']);
    await m.members(['c1']);
    expect(dir.calls).toHaveLength(2);
  });

  it('keeps nothing of a failed read', async () => {
    const dir = new CountingDirectory();
    const m = new RouterMembers(dir, true, clock);
    const members = jest.spyOn(dir, 'members').mockRejectedValueOnce(new Error('down'));
    await expect(m.members(['c1'])).rejects.toThrow('down');
    dir.lists.set('c1', ['a']);
    expect((await m.members(['c1'])).get('c1')).toEqual(['a']);
    expect(members).toHaveBeenCalledTimes(2);
  });
});
