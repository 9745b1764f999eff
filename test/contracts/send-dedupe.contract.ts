import { randomUUID } from 'node:crypto';
import { AckRecord, SendDedupe } from '../../src/session/send-dedupe';
import { waitFor } from '../support/wait-for';

/**
 * What every SendDedupe driver promises (src/session/send-dedupe.ts): per (sender, ref), the
 * first reserve in the window stores its candidate and gets null; every later one, from any node,
 * gets that record; concurrent reserves have exactly one winner; after the window the key is free.
 * Run by send-dedupe.<driver>.spec.ts.
 */
export interface SendDedupeHarness {
  /** A dedupe store remembering reservations for `windowMs`. */
  open(windowMs: number): Promise<SendDedupe>;
  /** The same store as seen from another gateway node (memory: the same instance). */
  peer(dedupe: SendDedupe, windowMs: number): Promise<SendDedupe>;
  dispose(): Promise<void>;
}

const WINDOW = 60_000;

let n = 0;
function ack(conversation = 'c1'): AckRecord {
  n++;
  return {
    id: `m-${n}-${randomUUID().slice(0, 8)}`,
    ts: 1_700_000_000_000 + n,
    conversation_id: conversation,
  };
}

const user = (): string => `user-${randomUUID().slice(0, 8)}`;

export function sendDedupeContract(driver: string, harness: () => SendDedupeHarness): void {
  describe(`SendDedupe contract (${driver})`, () => {
    let h: SendDedupeHarness;

    beforeAll(() => {
      h = harness();
    });

    afterAll(async () => {
      await h?.dispose();
    });

    it('the first reserve stores its candidate and gets null; later ones, from any node, get that record', async () => {
      const onA = await h.open(WINDOW);
      const onB = await h.peer(onA, WINDOW);
      const u = user();
      const first = ack();
      expect(await onA.reserve(u, 'ref-1', first)).toBeNull();
      expect(await onA.reserve(u, 'ref-1', ack())).toEqual(first);
      expect(await onB.reserve(u, 'ref-1', ack())).toEqual(first);
    });

    it('keys are per (user, ref): other refs and users are independent, even when ids contain ":"', async () => {
      const d = await h.open(WINDOW);
      const u = user();
      const v = user();
      expect(await d.reserve(u, 'ref-1', ack())).toBeNull();
      expect(await d.reserve(u, 'ref-2', ack())).toBeNull();
      expect(await d.reserve(v, 'ref-1', ack())).toBeNull();
      const x = user();
      const mine = ack('c-mine');
      expect(await d.reserve(x, 'y:z', mine)).toBeNull();
      expect(await d.reserve(`${x}:y`, 'z', ack('c-theirs'))).toBeNull();
      expect(await d.reserve(x, 'y:z', ack())).toEqual(mine);
    });

    it('concurrent reserves of one key from two nodes: exactly one wins, everyone gets its record', async () => {
      const onA = await h.open(WINDOW);
      const onB = await h.peer(onA, WINDOW);
      const u = user();
      const candidates = Array.from({ length: 40 }, () => ack());
      const results = await Promise.all(candidates.map((c, i) => (i % 2 ? onA : onB).reserve(u, 'race', c)));
      const winners = results.flatMap((r, i) => (r === null ? [candidates[i]] : []));
      expect(winners).toHaveLength(1);
      for (const r of results) if (r !== null) expect(r).toEqual(winners[0]);
    });

    it('forgets a reservation after the window, and a later reserve does not extend it', async () => {
      const d = await h.open(300);
      const u = user();
      const first = ack();
      const second = ack();
      const t0 = Date.now();
      expect(await d.reserve(u, 'ref', first)).toBeNull();
      expect(await d.reserve(u, 'ref', ack())).toEqual(first);
      await waitFor(async () => (await d.reserve(u, 'ref', second)) === null, 3_000, 'the window to pass');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      expect(await d.reserve(u, 'ref', ack())).toEqual(second);
    });
  });
}
