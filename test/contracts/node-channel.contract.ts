import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { EphemeralBatch, NodeChannel, NodeSubscriber, PushBatch } from '../../src/session/node-channel';
import { waitFor } from '../support/wait-for';

/**
 * What every NodeChannel driver promises (src/session/node-channel.ts): a node's subscriber gets the
 * batches published to that node, each once, in publish order, and nothing meant for other nodes;
 * publishing to a node nobody listens on is not an error; a throwing subscriber does not stop later
 * deliveries; after unsubscribe nothing arrives, and subscribing again works. The initial subscribe is
 * not a resync. Run by node-channel.<driver>.spec.ts.
 */
export interface NodeChannelHarness {
  /**
   * A network of its own: `channel()` is the NodeChannel of one more process on it (memory: the
   * one in-process instance). A channel both publishes and subscribes its node.
   */
  network(): { channel(): Promise<NodeChannel> };
  dispose(): Promise<void>;
}

class Recorder implements NodeSubscriber {
  readonly batches: PushBatch[] = [];
  resyncs = 0;
  onBatch(batch: PushBatch): void {
    this.batches.push(batch);
  }
  onResync(): void {
    this.resyncs++;
  }
}

function batch(tag: string, users: string[] = ['u1']): PushBatch {
  return {
    epoch: 'e1',
    envelopes: [{ id: `m-${tag}`, conversation_id: 'c1', from: 'alice', ts: 1, body: { tag, text: 'é👋' } }],
    deliveries: users.map((u, i) => ({ u, s: i + 1, e: 0 })),
  };
}

const nodeId = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

export function nodeChannelContract(driver: string, harness: () => NodeChannelHarness): void {
  describe(`NodeChannel contract (${driver})`, () => {
    let h: NodeChannelHarness;

    beforeAll(() => {
      h = harness();
    });

    afterAll(async () => {
      await h?.dispose();
    });

    afterEach(() => jest.restoreAllMocks());

    it('delivers to each subscribed node exactly its batches, once, in publish order; nobody listening is fine', async () => {
      const net = h.network();
      const router = await net.channel();
      const [a, b] = [nodeId('gw-a'), nodeId('gw-b')];
      const ra = new Recorder();
      const rb = new Recorder();
      await (await net.channel()).subscribe(a, ra);
      await (await net.channel()).subscribe(b, rb);

      const forA = [batch('a1', ['alice', 'ann']), batch('a2'), { ...batch('a3'), resync: true }];
      const forB = [batch('b1', ['bob'])];
      await router.publish(
        new Map([
          [a, forA[0]],
          [b, forB[0]],
          [nodeId('gone'), batch('nobody')],
        ]),
      );
      await router.publish(new Map([[a, forA[1]]]));
      await router.publish(new Map([[a, forA[2]]]));
      await router.publish(new Map());
      await waitFor(() => ra.batches.length >= 3 && rb.batches.length >= 1, 3_000, 'both nodes receive');
      // Deliveries are ordered: once a later marker arrived, nothing else can still be on its way.
      await router.publish(
        new Map([
          [a, batch('marker-a')],
          [b, batch('marker-b')],
        ]),
      );
      await waitFor(() => ra.batches.length >= 4 && rb.batches.length >= 2, 3_000, 'the markers');
      expect(ra.batches).toEqual([...forA, batch('marker-a')]);
      expect(rb.batches).toEqual([...forB, batch('marker-b')]);
      expect(ra.resyncs + rb.resyncs).toBe(0); // subscribing is not a resync
    });

    it('v1.1: carries ephemeral batches to the listener of their node, in order, apart from push batches', async () => {
      const net = h.network();
      const channel = await net.channel();
      const node = nodeId('gw');
      const pushes = new Recorder();
      const ephemeral: EphemeralBatch[] = [];
      await channel.subscribe(node, pushes);
      channel.listenEphemeral((b) => ephemeral.push(b));
      const typing: EphemeralBatch = {
        kind: 'ephemeral',
        typing: [{ c: 'c1', u: 'ann', s: 'start', x: 6000, t: ['bob', 'cy'] }],
      };
      const presence: EphemeralBatch = { kind: 'ephemeral', presence: [{ u: 'ann', on: false, v: 17 }] };
      await channel.publishEphemeral(new Map([[node, typing]]));
      await channel.publishEphemeral(
        new Map([
          [node, presence],
          [nodeId('other'), typing],
        ]),
      );
      await channel.publish(new Map([[node, batch('after')]]));
      await waitFor(() => pushes.batches.length === 1, 3_000, 'the push batch behind them');
      await waitFor(() => ephemeral.length === 2, 3_000, 'both ephemeral batches');
      expect(ephemeral).toEqual([typing, presence]);
      expect(pushes.batches).toEqual([batch('after')]);
      expect(pushes.resyncs).toBe(0);
      channel.listenEphemeral(null);
      await channel.unsubscribe();
    });

    it('keeps delivering after a subscriber threw', async () => {
      jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
      const net = h.network();
      const channel = await net.channel();
      const node = nodeId('gw');
      const received: PushBatch[] = [];
      let throwNext = true;
      await channel.subscribe(node, {
        onBatch: (b) => {
          received.push(b);
          if (throwNext) {
            throwNext = false;
            throw new Error('handler bug');
          }
        },
        onResync: () => undefined,
      });
      await channel.publish(new Map([[node, batch('first')]]));
      await channel.publish(new Map([[node, batch('second')]]));
      await waitFor(() => received.length >= 2, 3_000, 'the batch after the throw');
      expect(received).toEqual([batch('first'), batch('second')]);
    });

    it('stops delivering after unsubscribe; subscribing again works; ping answers either way', async () => {
      const net = h.network();
      const channel = await net.channel();
      const node = nodeId('gw');
      await expect(channel.ping()).resolves.toBeUndefined();
      const first = new Recorder();
      await channel.subscribe(node, first);
      await expect(channel.ping()).resolves.toBeUndefined();
      await channel.publish(new Map([[node, batch('before')]]));
      await waitFor(() => first.batches.length === 1, 3_000, 'delivery while subscribed');

      await channel.unsubscribe();
      await channel.unsubscribe(); // idempotent
      await channel.publish(new Map([[node, batch('lost')]]));
      await expect(channel.ping()).resolves.toBeUndefined();

      const again = new Recorder();
      await channel.subscribe(node, again);
      await channel.publish(new Map([[node, batch('again')]]));
      await waitFor(() => again.batches.length === 1, 3_000, 'delivery after subscribing again');
      expect(again.batches).toEqual([batch('again')]);
      expect(first.batches).toEqual([batch('before')]);
    });
  });
}
