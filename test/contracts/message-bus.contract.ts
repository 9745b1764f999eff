import { randomUUID } from 'node:crypto';
import { BusBatch, DeadLetter, MessageBus } from '../../src/bus/message-bus';
import { BusRecord } from '../../src/protocol/bus-record';
import { IngressMessage } from '../../src/protocol/envelope';
import { MembershipRecord } from '../../src/protocol/stream-records';
import { waitFor } from '../support/wait-for';

/**
 * What every MessageBus driver promises the router (src/bus/message-bus.ts): per-conversation order,
 * redelivery of a batch whose handler threw, commit only after the handler resolved, a clean stop that
 * commits the batch in progress, durable dead letters. Run by message-bus.<driver>.spec.ts.
 */
export interface BusHarness {
  /** A bus with a backend (topic, consumer group, dead letters) of its own, ready to publish. */
  create(): Promise<MessageBus>;
  /** The next consumer of `bus`'s group (another process; memory: the same instance again). */
  sameGroup(bus: MessageBus): Promise<MessageBus>;
  /** The first `n` dead letters of `bus`, read back from where the driver keeps them, oldest first. */
  deadLetters(bus: MessageBus, n: number): Promise<DeadLetter[]>;
  /** How long a delivery may take end to end on this driver (consumer join included). */
  deliveryTimeoutMs: number;
  dispose(): Promise<void>;
}

let n = 0;
function msg(conversation_id: string, body: unknown = { n: n + 1 }): IngressMessage {
  n++;
  return {
    id: `m-${String(n).padStart(6, '0')}-${randomUUID().slice(0, 8)}`,
    conversation_id,
    from: 'alice',
    ts: 1_700_000_000_000 + n,
    body,
    ref: `ref-${n}`,
  };
}

const conversation = (tag: string): string => `c-${tag}-${randomUUID().slice(0, 8)}`;
const ids = (messages: BusRecord[]): string[] => messages.map((m) => m.id);

/** Records every batch a handler got. */
function recorder() {
  const batches: BusBatch[] = [];
  const messages: BusRecord[] = [];
  const handler = async (batch: BusBatch): Promise<void> => {
    batches.push(batch);
    messages.push(...batch.messages);
  };
  return { batches, messages, handler };
}

export function messageBusContract(driver: string, harness: () => BusHarness): void {
  describe(`MessageBus contract (${driver})`, () => {
    let h: BusHarness;

    beforeAll(() => {
      h = harness();
    });

    afterAll(async () => {
      await h?.dispose();
    });

    it('delivers every published message once, in publish order per conversation, one partition per conversation', async () => {
      const bus = await h.create();
      await expect(bus.ping()).resolves.toBeUndefined();
      const conversations = Array.from({ length: 8 }, (_, i) => conversation(`order${i}`));
      const published: IngressMessage[] = [];
      // One at a time, then concurrently: publish order is call order either way.
      for (let i = 0; i < 40; i++) {
        published.push(msg(conversations[i % conversations.length], { text: `é👋 ${i}`, nested: [i, null] }));
        await bus.publish(published[published.length - 1]);
      }
      const concurrent = Array.from({ length: 160 }, (_, i) =>
        msg(conversations[(i * 3) % conversations.length]),
      );
      published.push(...concurrent);
      await Promise.all(concurrent.map((m) => bus.publish(m)));

      const rec = recorder();
      await bus.consume(rec.handler);
      await waitFor(() => rec.messages.length >= published.length, h.deliveryTimeoutMs, 'every message');

      expect(new Set(ids(rec.messages)).size).toBe(published.length);
      for (const c of conversations) {
        expect(ids(rec.messages.filter((m) => m.conversation_id === c))).toEqual(
          ids(published.filter((m) => m.conversation_id === c)),
        );
        const partitions = rec.batches.filter((b) => b.messages.some((m) => m.conversation_id === c));
        expect(new Set(partitions.map((b) => b.partition)).size).toBe(1);
      }
      for (const b of rec.batches) expect(b.messages.length).toBeGreaterThan(0);
      const byId = new Map(published.map((m) => [m.id, m]));
      for (const m of rec.messages) expect(m).toEqual(byId.get(m.id)); // every field survives
    });

    it('redelivers a batch whose handler threw, from its first message, before anything after it', async () => {
      const bus = await h.create();
      const c = conversation('retry');
      const other = conversation('other');
      const sent = Array.from({ length: 10 }, () => msg(c));
      const sentOther = Array.from({ length: 5 }, () => msg(other));
      for (let i = 0; i < 10; i++) {
        await bus.publish(sent[i]);
        if (i < 5) await bus.publish(sentOther[i]);
      }

      const calls: string[][] = [];
      let failed: string[] | null = null;
      await bus.consume(async (batch) => {
        const mine = batch.messages.filter((m) => m.conversation_id === c);
        if (failed === null && mine.length > 0) {
          failed = ids(mine);
          throw new Error('simulated: the outbox is down');
        }
        calls.push(ids(batch.messages));
      });
      await waitFor(
        () => new Set(calls.flat()).size >= sent.length + sentOther.length,
        h.deliveryTimeoutMs,
        'every message after the failure',
      );

      const afterFailure = calls.flat().filter((id) => sent.some((m) => m.id === id));
      expect(failed).not.toBeNull();
      expect(failed![0]).toBe(sent[0].id);
      // The failed batch comes again first, whole and in order, and the conversation continues in order.
      expect(afterFailure.slice(0, failed!.length)).toEqual(failed);
      expect([...new Set(afterFailure)]).toEqual(ids(sent));
      expect([...new Set(calls.flat().filter((id) => sentOther.some((m) => m.id === id)))]).toEqual(
        ids(sentOther),
      );
    });

    it('commits only after the handler resolved: a batch that never succeeded goes to the next consumer, a resolved one does not', async () => {
      const a = await h.create();
      const c = conversation('commit');
      const done = msg(c);
      const failing = msg(c);
      await a.publish(done);

      const seenByA: string[] = [];
      let attempts = 0;
      await a.consume(async (batch) => {
        if (batch.messages.some((m) => m.id === failing.id)) {
          attempts++;
          throw new Error('simulated: MySQL is down');
        }
        seenByA.push(...ids(batch.messages));
      });
      await waitFor(() => seenByA.includes(done.id), h.deliveryTimeoutMs, 'first message handled');
      await a.publish(failing);
      await waitFor(() => attempts >= 2, h.deliveryTimeoutMs, 'the failing batch redelivered');
      await a.stopConsuming();
      const attemptsAtStop = attempts;

      const b = await h.sameGroup(a);
      const rec = recorder();
      await b.consume(rec.handler);
      await waitFor(() => rec.messages.length >= 1, h.deliveryTimeoutMs, 'the next consumer resumes');
      // `done` precedes `failing` in the partition: had it not been committed, it would come first.
      expect(ids(rec.messages)).toEqual([failing.id]);
      expect(attempts).toBe(attemptsAtStop); // the stopped consumer handled nothing more
      expect(seenByA).toEqual([done.id]);
    });

    it('stopConsuming lets the batch in progress finish and commits it', async () => {
      const a = await h.create();
      const c = conversation('stop');
      const first = msg(c);
      await a.publish(first);

      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let entered = false;
      let finished = false;
      await a.consume(async () => {
        entered = true;
        await gate;
        finished = true;
      });
      await waitFor(() => entered, h.deliveryTimeoutMs, 'handler running');
      let stopped = false;
      const stopping = a.stopConsuming().then(() => (stopped = true));
      await new Promise((r) => setTimeout(r, 200)); // asserting that something does not happen takes a wait
      expect(stopped).toBe(false);
      release();
      await stopping;
      expect(finished).toBe(true);

      const second = msg(c);
      await a.publish(second);
      const b = await h.sameGroup(a);
      const rec = recorder();
      await b.consume(rec.handler);
      await waitFor(() => rec.messages.length >= 1, h.deliveryTimeoutMs, 'the next consumer resumes');
      expect(ids(rec.messages)).toEqual([second.id]);
    });

    it('deadLetter resolves once the dead letter is kept: message, reason, partition and time, in order', async () => {
      const bus = await h.create();
      const c = conversation('dlq');
      const poison = msg(c, { deep: [[[{ text: 'é👋' }]]] });
      const rejected = msg(c);
      const before = Date.now();
      await bus.deadLetter(poison, 'unserializable: RangeError: test', 1);
      await bus.deadLetter(rejected, 'outbox_rejected: test', 0);
      const after = Date.now();

      const kept = await h.deadLetters(bus, 2);
      expect(kept.map((d) => [d.message, d.reason, d.partition])).toEqual([
        [poison, 'unserializable: RangeError: test', 1],
        [rejected, 'outbox_rejected: test', 0],
      ]);
      for (const d of kept) {
        expect(d.at).toBeGreaterThanOrEqual(before);
        expect(d.at).toBeLessThanOrEqual(after);
      }
    });

    it('consumeAsGroup: a group of its own reads every record kind in order; the router gets messages and membership changes, in order; a stopped group resumes from its offsets', async () => {
      const bus = await h.create();
      const c = conversation('group');
      const m1 = msg(c);
      const change: MembershipRecord = {
        schema_version: 1,
        kind: 'membership',
        id: `mm-${randomUUID()}`,
        conversation_id: c,
        ts: Date.now(),
        op: 'added',
        members: ['bob'],
      };
      const m2 = msg(c);
      const router = recorder();
      await bus.consume(router.handler);
      const seen: string[] = [];
      let slow = true;
      const group = `g-${randomUUID().slice(0, 8)}`;
      let sub = await bus.consumeAsGroup(group, async (batch) => {
        for (const r of batch.records) if (r.conversation_id === c) seen.push(r.id as string);
      });
      await bus.publish(m1);
      await bus.publishRecord(change);
      await bus.publish(m2);
      await waitFor(() => seen.length >= 3, h.deliveryTimeoutMs, 'the group reads all three records');
      expect(seen).toEqual([m1.id, change.id, m2.id]);
      await waitFor(() => router.messages.length >= 3, h.deliveryTimeoutMs, 'the router reads the records');
      // Membership records reach the router too (it drops its cached member list on them).
      expect(ids(router.messages.filter((m) => m.conversation_id === c))).toEqual([m1.id, change.id, m2.id]);

      // A group whose handler keeps failing holds back only itself.
      await sub.stop();
      let failures = 0;
      sub = await bus.consumeAsGroup(group, async (batch) => {
        if (slow && batch.records.some((r) => r.conversation_id === c)) {
          failures++;
          throw new Error('simulated: webhook endpoint down');
        }
        for (const r of batch.records) if (r.conversation_id === c) seen.push(r.id as string);
      });
      const m3 = msg(c);
      await bus.publish(m3);
      await waitFor(
        () => router.messages.some((m) => m.id === m3.id),
        h.deliveryTimeoutMs,
        'the router is not held up',
      );
      await waitFor(() => failures >= 2, h.deliveryTimeoutMs, 'the failing group retries');
      slow = false;
      await waitFor(() => seen.includes(m3.id), h.deliveryTimeoutMs, 'the group resumes where it stopped');
      expect(seen).toEqual([m1.id, change.id, m2.id, m3.id]);
      await sub.stop();
      await bus.stopConsuming();
    });
  });
}
