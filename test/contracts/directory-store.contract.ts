import { DirectoryStore } from '../../src/directory/conversation-directory';

/**
 * What every DirectoryStore driver promises (src/directory/conversation-directory.ts): members in the
 * order given without duplicates, many conversations per get (unknown ones left out, empty ones kept),
 * put replaces, delete tells whether there was something, ids are byte-exact.
 * Run by directory-store.<driver>.spec.ts.
 */
export interface DirectoryStoreHarness {
  /** A store over an empty backend. */
  open(): Promise<DirectoryStore>;
  dispose(): Promise<void>;
}

export function directoryStoreContract(driver: string, harness: () => DirectoryStoreHarness): void {
  describe(`DirectoryStore contract (${driver})`, () => {
    let h: DirectoryStoreHarness;

    beforeAll(() => {
      h = harness();
    });

    afterAll(async () => {
      await h?.dispose();
    });

    it('puts and gets members in the order given, without duplicates', async () => {
      const store = await h.open();
      await store.put('c1', ['carol', 'alice', 'bob', 'alice']);
      expect(await store.get(['c1'])).toEqual(new Map([['c1', ['carol', 'alice', 'bob']]]));
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('gets many conversations in one call, leaving unknown ones out and keeping empty ones', async () => {
      const store = await h.open();
      await store.put('c1', ['alice', 'bob']);
      await store.put('c2', ['carol']);
      await store.put('empty', []);
      expect(await store.get(['c2', 'nope', 'c1', 'empty', 'c1'])).toEqual(
        new Map([
          ['c1', ['alice', 'bob']],
          ['c2', ['carol']],
          ['empty', []],
        ]),
      );
      expect(await store.get([])).toEqual(new Map());
    });

    it('replaces the member list on put', async () => {
      const store = await h.open();
      await store.put('c1', ['alice', 'bob', 'carol']);
      await store.put('c1', ['dave', 'alice']);
      expect(await store.get(['c1'])).toEqual(new Map([['c1', ['dave', 'alice']]]));
    });

    it('deletes a conversation, tells whether it existed, and lets it be created again', async () => {
      const store = await h.open();
      await store.put('c1', ['alice', 'bob']);
      await store.put('c2', ['carol']);
      expect(await store.delete('c1')).toBe(true);
      expect(await store.delete('c1')).toBe(false);
      expect(await store.delete('never')).toBe(false);
      expect(await store.get(['c1', 'c2'])).toEqual(new Map([['c2', ['carol']]]));
      await store.put('c1', ['erin']);
      expect(await store.get(['c1'])).toEqual(new Map([['c1', ['erin']]]));
    });

    it('treats ids byte-exactly: case and trailing spaces are different conversations and users', async () => {
      const store = await h.open();
      await store.put('c1', ['alice', 'Alice', 'alice ']);
      await store.put('C1', ['bob']);
      await store.put('c1 ', ['carol']);
      const found = await store.get(['c1', 'C1', 'c1 ']);
      expect(found.get('c1')).toEqual(['alice', 'Alice', 'alice ']);
      expect(found.get('C1')).toEqual(['bob']);
      expect(found.get('c1 ')).toEqual(['carol']);
    });

    it('handles large member lists and lookups', async () => {
      const store = await h.open();
      const members = Array.from({ length: 2_500 }, (_, i) => `user-${i}`);
      await store.put('big', members);
      expect((await store.get(['big'])).get('big')).toEqual(members);
      const ids = Array.from({ length: 250 }, (_, i) => `conv-${i}`);
      for (const id of ids.slice(0, 5)) await store.put(id, [id]);
      expect([...(await store.get(ids)).keys()].sort()).toEqual(ids.slice(0, 5).sort());
    });

    it('adds and removes members without touching the others, idempotently, within the limit', async () => {
      const store = await h.open();
      expect(await store.addMembers('c1', ['alice', 'bob', 'alice'], 5)).toEqual({
        ok: true,
        changed: 2,
        count: 2,
      });
      expect(await store.addMembers('c1', ['bob', 'carol'], 5)).toEqual({ ok: true, changed: 1, count: 3 });
      expect(await store.get(['c1'])).toEqual(new Map([['c1', ['alice', 'bob', 'carol']]]));
      // Over the limit: refused as a whole, nothing added.
      expect(await store.addMembers('c1', ['d', 'e', 'f'], 5)).toEqual({ ok: false, count: 3 });
      expect(await store.addMembers('c1', ['bob', 'd', 'e'], 5)).toEqual({ ok: true, changed: 2, count: 5 });
      expect(await store.removeMembers('c1', ['bob', 'nobody'])).toEqual({ ok: true, changed: 1, count: 4 });
      expect(await store.removeMembers('c1', ['bob'])).toEqual({ ok: true, changed: 0, count: 4 });
      expect(await store.removeMembers('none', ['bob'])).toBeNull();
      expect((await store.get(['c1'])).get('c1')).toEqual(['alice', 'carol', 'd', 'e']);
    });

    it('concurrent adds to one conversation never lose each other', async () => {
      const store = await h.open();
      const users = Array.from({ length: 40 }, (_, i) => `u${i}`);
      await Promise.all(users.map((u) => store.addMembers('busy', [u], 1000)));
      expect([...(await store.get(['busy'])).get('busy')!].sort()).toEqual([...users].sort());
    });

    it('lists members one page at a time in id order', async () => {
      const store = await h.open();
      await store.put('c1', ['d', 'B', 'a', 'c']);
      expect(await store.listMembers('c1', null, 3)).toEqual({ members: ['B', 'a', 'c'], next: 'c' });
      expect(await store.listMembers('c1', 'c', 3)).toEqual({ members: ['d'], next: null });
      expect(await store.listMembers('nope', null, 3)).toBeNull();
      await store.put('empty', []);
      expect(await store.listMembers('empty', null, 3)).toEqual({ members: [], next: null });
    });
  });
}
