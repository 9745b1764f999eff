import { NewDelivery, OutboxStore, StoredDelivery } from '../../src/outbox/outbox.store';
import { Envelope } from '../../src/protocol/envelope';
import { isReceiptEntry, OutboxEntry, ReceiptEnvelope } from '../../src/protocol/outbox-entry';

/**
 * What every OutboxStore driver promises (src/outbox/outbox.store.ts): atomic, idempotent appends;
 * gapless per-user seqs in input and commit order; reads of unexpired deliveries in seq order;
 * retention that tells an intact cursor from one whose deliveries expired; bounded purges that keep
 * each user's head. Run by outbox-store.<driver>.spec.ts.
 */
export interface OutboxHarness {
  /** A store over an empty backend; deliveries outlive every test. */
  open(): Promise<OutboxStore>;
  /** Another writer on the same backend (another router process; memory: the same instance). */
  peer(store: OutboxStore): Promise<OutboxStore>;
  /**
   * A store over an empty backend whose deliveries expire, and `expire()`, which lets its retention
   * pass for everything appended so far (and not for what is appended afterwards, for a while).
   */
  openExpiring(): Promise<{ store: OutboxStore; expire(): Promise<void> }>;
  dispose(): Promise<void>;
  /**
   * The store orders a conversation's messages only as its writers do (the sharded outbox): one
   * writer appends a conversation's batches in order, others only repeat those batches (a partition
   * handed over), as the router does. The concurrency test then gives each writer a conversation.
   */
  oneWriterPerConversation?: boolean;
}

function env(
  id: string,
  body: unknown = { text: `hello ${id}` },
  conversation = 'c1',
  from = 'alice',
): Envelope {
  return { id, conversation_id: conversation, from, ts: 1_700_000_000_000, body };
}

function receipt(id: string, conversation: string, userId: string, seq: number): ReceiptEnvelope {
  return {
    type: 'receipt',
    id,
    conversation_id: conversation,
    payload: { conversation_id: conversation, user_id: userId, kind: 'read', seq, ts: 1_700_000_000_001 },
  };
}

/** The conversation seq a stored message carries (undefined for receipts). */
const convSeq = (e: OutboxEntry): number | undefined => (isReceiptEntry(e) ? undefined : e.seq);

const seqs = (stored: StoredDelivery[]): number[] => stored.map((d) => d.seq);
const many = (userId: string, ids: string[]): NewDelivery[] =>
  ids.map((id) => ({ userId, envelope: env(id) }));

export function outboxStoreContract(driver: string, harness: () => OutboxHarness): void {
  describe(`OutboxStore contract (${driver})`, () => {
    let h: OutboxHarness;

    beforeAll(() => {
      h = harness();
    });

    afterAll(async () => {
      await h?.dispose();
    });

    it('has a stable epoch shared by every writer of the store, and answers ping', async () => {
      const store = await h.open();
      expect(store.epoch()).toEqual(expect.any(String));
      expect(store.epoch().length).toBeGreaterThan(0);
      expect(store.epoch()).toBe(store.epoch());
      expect((await h.peer(store)).epoch()).toBe(store.epoch());
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('assigns gapless per-user seqs in input order and returns one delivery per input, in input order', async () => {
      const store = await h.open();
      const stored = await store.append([
        { userId: 'a', envelope: env('m1') },
        { userId: 'b', envelope: env('m1') },
        { userId: 'a', envelope: env('m2') },
        { userId: 'a', envelope: env('m3') },
        { userId: 'b', envelope: env('m2') },
      ]);
      expect(stored.map((d) => [d.userId, d.envelope.id, d.seq])).toEqual([
        ['a', 'm1', 1],
        ['b', 'm1', 1],
        ['a', 'm2', 2],
        ['a', 'm3', 3],
        ['b', 'm2', 2],
      ]);
      expect(seqs(await store.append(many('a', ['m4'])))).toEqual([4]);
      expect((await store.readAfter('a', 0, 10)).map((d) => d.envelope.id)).toEqual(['m1', 'm2', 'm3', 'm4']);
      expect(await store.append([])).toEqual([]);
    });

    it('is idempotent per (user, message): a repeated append returns the original seqs and stores nothing new', async () => {
      const store = await h.open();
      const batch: NewDelivery[] = [
        { userId: 'a', envelope: env('m1') },
        { userId: 'b', envelope: env('m1') },
        { userId: 'a', envelope: env('m2') },
      ];
      const first = await store.append(batch);
      expect(seqs(await store.append(batch))).toEqual(seqs(first));
      expect(seqs(await store.readAfter('a', 0, 10))).toEqual([1, 2]);

      // A redelivered batch overlapping new work: old ones keep their seqs, new ones continue.
      const mixed = await store.append([
        { userId: 'a', envelope: env('m3') },
        { userId: 'a', envelope: env('m2') },
        { userId: 'c', envelope: env('m2') },
      ]);
      expect(seqs(mixed)).toEqual([3, 2, 1]);
      expect((await store.readAfter('a', 0, 10)).map((d) => d.envelope.id)).toEqual(['m1', 'm2', 'm3']);
      expect(await store.retention('a', 0)).toEqual({ head: 3, firstRetainedAfter: 1 });

      // The same (user, message) twice in one call is one delivery.
      expect(seqs(await store.append(many('d', ['m1', 'm2', 'm1'])))).toEqual([1, 2, 1]);
      expect(seqs(await store.readAfter('d', 0, 10))).toEqual([1, 2]);
    });

    it('stores the envelope verbatim and treats user ids byte-exactly', async () => {
      const store = await h.open();
      const e = env('m1', { text: 'héllo 👋 "quoted" \\ back', nested: { n: [1, 2.5, null, true] } });
      await store.append([{ userId: 'alice', envelope: e }]);
      // Verbatim, plus its conversation order number (v1.1).
      expect(await store.readAfter('alice', 0, 10)).toEqual([
        { userId: 'alice', seq: 1, envelope: { ...e, seq: 1 } },
      ]);

      await store.append([
        { userId: 'Alice', envelope: env('m1') },
        { userId: 'alice ', envelope: env('m1') },
        { userId: 'alice', envelope: env('m2') },
      ]);
      expect(seqs(await store.readAfter('alice', 0, 10))).toEqual([1, 2]);
      expect(seqs(await store.readAfter('Alice', 0, 10))).toEqual([1]);
      expect(seqs(await store.readAfter('alice ', 0, 10))).toEqual([1]);
    });

    it('reads after a seq, in seq order, at most `limit`', async () => {
      const store = await h.open();
      await store.append(
        many(
          'a',
          Array.from({ length: 25 }, (_, i) => `m${i + 1}`),
        ),
      );
      await store.append(many('b', ['other']));
      const pages: number[][] = [];
      for (let after = 0; ;) {
        const page = await store.readAfter('a', after, 10);
        if (page.length === 0) break;
        expect(page.map((d) => d.envelope.id)).toEqual(page.map((d) => `m${d.seq}`));
        expect(page.every((d) => d.userId === 'a')).toBe(true);
        pages.push(seqs(page));
        after = page[page.length - 1].seq;
      }
      expect(pages.map((p) => [p[0], p[p.length - 1]])).toEqual([
        [1, 10],
        [11, 20],
        [21, 25],
      ]);
      expect(seqs(await store.readAfter('a', 23, 10))).toEqual([24, 25]);
      expect(await store.readAfter('a', 25, 10)).toEqual([]);
      expect(await store.readAfter('a', 0, 0)).toEqual([]);
      expect(await store.readAfter('nobody', 0, 10)).toEqual([]);
    });

    it('reports retention: head and the first retained seq after a cursor', async () => {
      const store = await h.open();
      expect(await store.retention('nobody', 0)).toEqual({ head: 0, firstRetainedAfter: null });
      expect(await store.retention('nobody', 5)).toEqual({ head: 0, firstRetainedAfter: null });
      await store.append(many('a', ['m1', 'm2', 'm3', 'm4']));
      expect(await store.retention('a', 0)).toEqual({ head: 4, firstRetainedAfter: 1 });
      expect(await store.retention('a', 2)).toEqual({ head: 4, firstRetainedAfter: 3 });
      expect(await store.retention('a', 4)).toEqual({ head: 4, firstRetainedAfter: null });
    });

    it('hides expired deliveries, keeps the head, and seqs continue after expiry', async () => {
      const { store, expire } = await h.openExpiring();
      await store.append(many('a', ['m1', 'm2']));
      await expire();
      await store.append(many('a', ['m3']));
      expect(seqs(await store.readAfter('a', 0, 10))).toEqual([3]);
      expect(seqs(await store.readAfter('a', 1, 1))).toEqual([3]);
      // A cursor before the hole sees the gap (first retained is not cursor + 1); one at its edge does not.
      expect(await store.retention('a', 0)).toEqual({ head: 3, firstRetainedAfter: 3 });
      expect(await store.retention('a', 2)).toEqual({ head: 3, firstRetainedAfter: 3 });

      await expire();
      expect(await store.readAfter('a', 0, 10)).toEqual([]);
      expect(await store.retention('a', 0)).toEqual({ head: 3, firstRetainedAfter: null });
      expect(seqs(await store.append(many('a', ['m4'])))).toEqual([4]);
    });

    it('purges expired deliveries in bounded chunks, keeping heads, live deliveries and their idempotency', async () => {
      const { store, expire } = await h.openExpiring();
      await store.append(
        ['a', 'b', 'c'].flatMap((u) =>
          many(
            u,
            Array.from({ length: 9 }, (_, i) => `old${i}`),
          ),
        ),
      );
      expect(await store.purgeExpired(10)).toBe(0); // nothing expired yet
      await expire();
      await store.append(['a', 'b'].flatMap((u) => many(u, ['new'])));

      const chunks: number[] = [];
      for (let n = -1; n !== 0;) chunks.push((n = await store.purgeExpired(10)));
      expect(chunks).toEqual([10, 10, 7, 0]);
      expect(seqs(await store.readAfter('a', 0, 100))).toEqual([10]);
      expect(await store.retention('a', 0)).toEqual({ head: 10, firstRetainedAfter: 10 });
      expect(await store.retention('c', 0)).toEqual({ head: 9, firstRetainedAfter: null });
      expect(seqs(await store.append(many('c', ['next'])))).toEqual([10]);
      expect(seqs(await store.append(many('a', ['new'])))).toEqual([10]);
    });

    it('reports its size and the age of its oldest delivery, and nothing once all is purged', async () => {
      const { store, expire } = await h.openExpiring();
      expect(await store.stats()).toEqual({ rows: 0, oldestAgeMs: null });
      await store.append([...many('a', ['m1', 'm2', 'm3']), ...many('b', ['m1', 'm2'])]);
      const stats = await store.stats();
      expect(stats.rows).toBe(5);
      expect(stats.oldestAgeMs).toBeGreaterThanOrEqual(0);
      expect(stats.oldestAgeMs).toBeLessThan(60_000);
      await expire();
      while ((await store.purgeExpired(100)) > 0);
      expect(await store.stats()).toEqual({ rows: 0, oldestAgeMs: null });
    });

    it('numbers messages per conversation (payload.seq): gapless, in input order, the same for every recipient', async () => {
      const store = await h.open();
      const stored = await store.append([
        { userId: 'a', envelope: env('x1', null, 'cx') },
        { userId: 'b', envelope: env('x1', null, 'cx') },
        { userId: 'a', envelope: env('y1', null, 'cy') },
        { userId: 'b', envelope: env('x2', null, 'cx') },
        { userId: 'a', envelope: env('x2', null, 'cx') },
      ]);
      expect(stored.map((d) => [d.userId, d.envelope.id, d.seq, convSeq(d.envelope)])).toEqual([
        ['a', 'x1', 1, 1],
        ['b', 'x1', 1, 1],
        ['a', 'y1', 2, 1],
        ['b', 'x2', 2, 2],
        ['a', 'x2', 3, 2],
      ]);
      const next = await store.append([{ userId: 'c', envelope: env('x3', null, 'cx') }]);
      expect(convSeq(next[0].envelope)).toBe(3);
      expect((await store.readAfter('a', 0, 10)).map((d) => convSeq(d.envelope))).toEqual([1, 1, 2]);
      expect(await store.conversationHeads(['cx', 'cy', 'nothing'])).toEqual(
        new Map([
          ['cx', 3],
          ['cy', 1],
          ['nothing', 0],
        ]),
      );
    });

    it('keeps the first conversation seq when a message is appended again (redelivery), also for new recipients', async () => {
      const store = await h.open();
      await store.append([{ userId: 'a', envelope: env('m1', null, 'cz') }]);
      await store.append([{ userId: 'a', envelope: env('m2', null, 'cz') }]);
      // A redelivered batch: the caller's envelope has no seq (or a wrong one); the stored one wins.
      const again = await store.append([
        { userId: 'a', envelope: { ...env('m1', null, 'cz'), seq: 99 } },
        { userId: 'b', envelope: env('m1', null, 'cz') },
        { userId: 'b', envelope: env('m3', null, 'cz') },
      ]);
      expect(again.map((d) => [d.userId, d.envelope.id, d.seq, convSeq(d.envelope)])).toEqual([
        ['a', 'm1', 1, 1],
        ['b', 'm1', 1, 1],
        ['b', 'm3', 2, 3],
      ]);
      expect((await store.readAfter('b', 0, 10)).map((d) => convSeq(d.envelope))).toEqual([1, 3]);
      expect((await store.conversationHeads(['cz'])).get('cz')).toBe(3);
    });

    it('stores receipts in the same per-user order as messages, without a conversation seq, idempotently', async () => {
      const store = await h.open();
      await store.append([
        { userId: 'a', envelope: env('m1', null, 'cr', 'b') },
        { userId: 'b', envelope: env('m1', null, 'cr', 'b') },
      ]);
      const r = receipt('r1', 'cr', 'a', 1);
      const first = await store.append([
        { userId: 'a', envelope: r },
        { userId: 'b', envelope: r },
      ]);
      expect(first.map((d) => [d.userId, d.seq])).toEqual([
        ['a', 2],
        ['b', 2],
      ]);
      expect(await store.append([{ userId: 'b', envelope: r }])).toEqual([
        { userId: 'b', seq: 2, envelope: r },
      ]);
      await store.append([{ userId: 'b', envelope: env('m2', null, 'cr', 'a') }]);
      const read = await store.readAfter('b', 0, 10);
      expect(read.map((d) => [d.seq, d.envelope.id, convSeq(d.envelope)])).toEqual([
        [1, 'm1', 1],
        [2, 'r1', undefined],
        [3, 'm2', 2],
      ]);
      expect(read[1].envelope).toEqual(r);
      expect((await store.conversationHeads(['cr'])).get('cr')).toBe(2); // receipts take no number
    });

    it('names the distinct senders of a conversation seq range, bounded to its newest messages', async () => {
      const store = await h.open();
      const senders = ['s1', 's2', 's1', 's3', 's2', 's4'];
      await store.append(
        senders.map((from, i) => ({ userId: 'u', envelope: env(`s-${i}`, null, 'cs', from) })),
      );
      const sorted = async (after: number, upto: number, limit: number) =>
        (await store.senders('cs', after, upto, limit)).sort();
      expect(await sorted(0, 6, 100)).toEqual(['s1', 's2', 's3', 's4']);
      expect(await sorted(2, 4, 100)).toEqual(['s1', 's3']); // seqs 3..4
      expect(await sorted(0, 6, 2)).toEqual(['s2', 's4']); // only seqs 5..6
      expect(await sorted(6, 6, 100)).toEqual([]);
      expect(await store.senders('nothing', 0, 10, 10)).toEqual([]);
    });

    it('keeps seqs gapless, consistent and visible in order with several writers appending for the same users at once', async () => {
      const store = await h.open();
      const writers = [store, await h.peer(store), await h.peer(store)];
      const users = Array.from({ length: 8 }, (_, i) => `user${i}`);
      const BATCHES = 12;
      // Every 4th batch is the same message on every writer: a redelivery racing its original.
      const batchFor = (w: number, b: number): NewDelivery[] => {
        const shared = b % 4 === 0;
        const id = shared ? `shared-${b}` : `w${w}-b${b}`;
        const k = shared ? b : w * 100 + b;
        const conversation = h.oneWriterPerConversation ? (shared ? 'c-shared' : `c-w${w}`) : 'c1';
        return users
          .filter((_, i) => (i * 7 + k * 13) % 5 !== 0)
          .map((userId) => ({ userId, envelope: env(id, undefined, conversation) }));
      };

      const returned = new Map<string, number>();
      const conflicts: string[] = [];
      const last = new Map(users.map((u) => [u, 0]));
      const violations: string[] = [];
      const follow = async () => {
        for (const u of users) {
          for (const d of await store.readAfter(u, last.get(u)!, 1000)) {
            if (d.seq !== last.get(u)! + 1) violations.push(`${u}: read ${d.seq} after ${last.get(u)}`);
            last.set(u, d.seq);
          }
        }
      };
      let writing = true;
      const following = (async () => {
        while (writing) await follow();
      })();
      try {
        await Promise.all(
          writers.map(async (writer, w) => {
            for (let b = 0; b < BATCHES; b++) {
              for (const d of await writer.append(batchFor(w, b))) {
                const key = `${d.userId} ${d.envelope.id}`;
                const prev = returned.get(key);
                if (prev !== undefined && prev !== d.seq) conflicts.push(`${key}: ${prev} vs ${d.seq}`);
                returned.set(key, d.seq);
              }
            }
          }),
        );
      } finally {
        writing = false;
        await following;
      }
      await follow();

      expect(violations).toEqual([]);
      expect(conflicts).toEqual([]);
      for (const u of users) {
        const expected = new Set(
          writers.flatMap((_, w) =>
            Array.from({ length: BATCHES }, (_, b) => batchFor(w, b))
              .flat()
              .filter((d) => d.userId === u)
              .map((d) => d.envelope.id),
          ),
        );
        const rows = await store.readAfter(u, 0, 1000);
        expect(seqs(rows)).toEqual(Array.from({ length: expected.size }, (_, i) => i + 1));
        expect(new Set(rows.map((d) => d.envelope.id))).toEqual(expected);
        for (const d of rows) expect(returned.get(`${u} ${d.envelope.id}`)).toBe(d.seq);
        expect(last.get(u)).toBe(expected.size);
      }
      // Conversation seqs: one per distinct message, gapless per conversation, the same in every
      // user's copy, and in every user's log in increasing order per conversation (commit order).
      const byConversation = new Map<string, Map<string, number>>();
      for (const u of users) {
        const numbers = new Map<string, number[]>();
        for (const d of await store.readAfter(u, 0, 1000)) {
          const n = convSeq(d.envelope)!;
          const c = d.envelope.conversation_id;
          let byMessage = byConversation.get(c);
          if (!byMessage) byConversation.set(c, (byMessage = new Map()));
          const prev = byMessage.get(d.envelope.id);
          if (prev !== undefined && prev !== n) conflicts.push(`${d.envelope.id}: ${prev} vs ${n}`);
          byMessage.set(d.envelope.id, n);
          numbers.set(c, [...(numbers.get(c) ?? []), n]);
        }
        for (const seen of numbers.values()) expect(seen).toEqual([...seen].sort((x, y) => x - y));
      }
      expect(conflicts).toEqual([]);
      expect(byConversation.size).toBe(h.oneWriterPerConversation ? writers.length + 1 : 1);
      for (const byMessage of byConversation.values()) {
        expect([...byMessage.values()].sort((x, y) => x - y)).toEqual(
          Array.from({ length: byMessage.size }, (_, i) => i + 1),
        );
      }
    });
  });
}
