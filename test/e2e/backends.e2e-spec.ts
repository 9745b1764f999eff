import Ajv from 'ajv';
import { INestApplication } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { startApp } from '../../src/bootstrap';
import { MessageBus } from '../../src/bus/message-bus';
import { loadConfig } from '../../src/config/app-config';
import { Config } from '../../src/config/config.module';
import { databaseFor, isolatedEngineEnv, mysqlAdmin } from '../support/backends';
import { signHs256 } from '../support/jwt';
import { productionEngine } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { ReceivedEvent, WebhookReceiver } from '../support/webhook-receiver';
import { Frame, TestClient } from '../support/ws-client';

/**
 * Backends in the loop (issue 13), on both engines: the HTTP publish API, the membership API, the
 * event stream read by a consumer group of its own, and webhooks (signed, ordered, at-least-once,
 * surviving an endpoint outage and a relay restart).
 */
jest.setTimeout(120_000);

const JWT_SECRET = 'backends-e2e-jwt-secret-0123456789abcdef';
const ADMIN = 'backends-e2e-admin-key-0123456789abcdef';
const HOOK_SECRET = 'backends-e2e-webhook-secret-0123456789';
const schema = JSON.parse(
  readFileSync(join(__dirname, '../../docs/schemas/stream-record.schema.json'), 'utf8'),
) as object;
const validateRecord = new Ajv({ strict: false }).compile(schema);

interface Relay {
  app: INestApplication;
  http: string;
  ws: string;
  close(): Promise<void>;
}

/** Boots relay under a fixed name, so a restart finds the same topic, groups and database. */
async function bootRelay(name: string, hookUrl: string): Promise<Relay> {
  const config = loadConfig({
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'error',
    AUTH_MODE: 'jwt',
    JWT_SECRET,
    ADMIN_API_KEY: ADMIN,
    SEND_RATE_PER_SEC: '1000',
    SEND_BURST: '1000',
    MAX_CONVERSATION_MEMBERS: '100',
    MAX_FRAME_BYTES: '8192',
    PUBLISH_SERVICE_IDS: 'billing-bot',
    WEBHOOK_URLS: hookUrl,
    WEBHOOK_SECRET: HOOK_SECRET,
    WEBHOOK_BACKOFF_MAX_MS: '300',
    WEBHOOK_BATCH_MAX: '20',
    ...(productionEngine ? isolatedEngineEnv(name) : {}),
  });
  const app = await startApp(config);
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, http: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}/ws`, close: () => app.close() };
}

describe(`backends: publish API, membership API, event stream, webhooks (${productionEngine ? 'production' : 'embedded'} engine)`, () => {
  const name = `e2e-${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const receiver = new WebhookReceiver(HOOK_SECRET);
  let relay: Relay;
  const clients: TestClient[] = [];
  let run = 0;
  const uid = (x: string) => `${x}${run}`;

  const api = (path: string, method: string, body?: unknown, key: string | null = ADMIN) =>
    fetch(`${relay.http}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  const publish = (conversation: string, msg: unknown, key: string | null = ADMIN) =>
    api(`/v1/conversations/${conversation}/messages`, 'POST', msg, key);
  const put = async (conversation: string, members: string[]) => {
    const res = await api(`/v1/conversations/${conversation}`, 'PUT', { members });
    expect(res.status).toBe(200);
  };
  const connect = async (user: string) => {
    const token = await signHs256(JWT_SECRET, user);
    const { client } = await TestClient.connect(`${relay.ws}?token=${token}`);
    clients.push(client);
    return client;
  };
  /** The next message frame's payload, failing if anything but `expected` arrives first. */
  const nextBody = async (c: TestClient) => (await c.next((f: Frame) => f.type === 'message')).payload!;

  beforeAll(async () => {
    if (productionEngine) await mysqlAdmin(`CREATE DATABASE \`${databaseFor(name)}\``);
    await receiver.start();
    relay = await bootRelay(name, receiver.url);
  });
  beforeEach(() => {
    run++;
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.terminate();
  });
  afterAll(async () => {
    await relay?.close();
    await receiver.stop();
    if (productionEngine) await mysqlAdmin(`DROP DATABASE IF EXISTS \`${databaseFor(name)}\``);
  });

  describe('publish API', () => {
    it('a backend publish reaches every member connection once, answered 201 {id, ts}', async () => {
      const [alice, bob, room] = [uid('alice'), uid('bob'), uid('room')];
      await put(room, [alice, bob]);
      const a1 = await connect(alice);
      const a2 = await connect(alice);
      const b = await connect(bob);
      const res = await publish(room, { from: bob, body: { text: 'from the backend' }, ref: 'p-1' });
      expect(res.status).toBe(201);
      const ack = (await res.json()) as { id: string; ts: number };
      expect(Object.keys(ack).sort()).toEqual(['id', 'ts']);
      for (const c of [a1, a2, b]) {
        expect(await nextBody(c)).toEqual({
          id: ack.id,
          conversation_id: room,
          from: bob,
          ts: ack.ts,
          body: { text: 'from the backend' },
          seq: 1, // v1.1: the conversation order number
        });
      }
      // Once: the next message each connection gets is the next one published.
      const second = (await (await publish(room, { from: alice, body: 2, ref: 'p-2' })).json()) as {
        id: string;
      };
      for (const c of [a1, a2, b]) expect((await nextBody(c)).id).toBe(second.id);
    });

    it('the same ref answers the same id and ts and creates nothing', async () => {
      const [alice, room] = [uid('alice'), uid('room')];
      await put(room, [alice]);
      const a = await connect(alice);
      const first = await (await publish(room, { from: alice, body: 'once', ref: 'dup' })).json();
      const again = await publish(room, { from: alice, body: 'once', ref: 'dup' });
      expect(again.status).toBe(201);
      expect(await again.json()).toEqual(first);
      const marker = (await (await publish(room, { from: alice, body: 'marker', ref: 'm' })).json()) as {
        id: string;
      };
      expect((await nextBody(a)).body).toBe('once');
      const next = await nextBody(a);
      // A retried ref may be re-published under the same id; the router stores it once.
      expect(next.id).toBe(marker.id);
    });

    it('a declared service id may publish without being a member; others get 403', async () => {
      const [alice, room] = [uid('alice'), uid('room')];
      await put(room, [alice]);
      const a = await connect(alice);
      const ok = await publish(room, { from: 'billing-bot', body: 'invoice', ref: 's-1' });
      expect(ok.status).toBe(201);
      expect(await nextBody(a)).toMatchObject({ from: 'billing-bot', body: 'invoice' });
      const no = await publish(room, { from: uid('mallory'), body: 'x', ref: 's-2' });
      expect(no.status).toBe(403);
      expect(await no.json()).toEqual({
        code: 'forbidden',
        message: expect.stringContaining('not a member'),
      });
    });

    it('answers the documented errors: 401, 400, 404, 413', async () => {
      const [alice, room] = [uid('alice'), uid('room')];
      await put(room, [alice]);
      const good = { from: alice, body: 'x', ref: 'e-1' };
      for (const key of [null, 'wrong-key']) {
        const res = await publish(room, good, key);
        expect(res.status).toBe(401);
        expect(await res.json()).toMatchObject({ code: 'unauthorized' });
      }
      const bad: [unknown, string][] = [
        [{ from: alice, body: 'x' }, 'ref'],
        [{ from: alice, body: 'x', ref: '' }, 'ref'],
        [{ from: alice, body: 'x', ref: 'r'.repeat(65) }, 'ref'],
        [{ from: alice, ref: 'r' }, 'body'],
        [{ from: 'not valid!', body: 'x', ref: 'r' }, 'from'],
        [{ body: 'x', ref: 'r' }, 'from'],
        [[1, 2], 'object'],
        [
          { from: alice, ref: 'deep', body: JSON.parse('['.repeat(63) + ']'.repeat(63)) as unknown },
          'deeper',
        ],
      ];
      for (const [body, what] of bad) {
        const res = await publish(room, body);
        const answer = (await res.json()) as { code: string; message: string };
        expect([res.status, answer.code]).toEqual([400, 'bad_request']);
        expect(answer.message).toContain(what);
      }
      // 62 levels in the body is what a WebSocket send may carry: accepted.
      const deepest = JSON.parse('['.repeat(62) + ']'.repeat(62)) as unknown;
      expect((await publish(room, { from: alice, ref: 'deep-ok', body: deepest })).status).toBe(201);
      expect((await publish('bad id!', good)).status).toBe(400);
      const missing = await publish(uid('nowhere'), good);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ code: 'not_found' });
      // Over MAX_FRAME_BYTES as a send frame, and over the request body limit (refused unparsed).
      for (const size of [9_000, 30_000]) {
        const big = await publish(room, { from: alice, ref: 'big', body: 'x'.repeat(size) });
        expect(big.status).toBe(413);
        expect(await big.json()).toMatchObject({ code: 'too_large' });
      }
    });

    it('a batch is checked as a whole, then published in order', async () => {
      const [alice, bob, room, other] = [uid('alice'), uid('bob'), uid('room'), uid('other')];
      await put(room, [alice, bob]);
      await put(other, [bob]);
      const b = await connect(bob);
      const refused = await api('/v1/messages', 'POST', {
        messages: [
          { conversation_id: room, from: alice, body: 0, ref: 'b-0' },
          { conversation_id: other, from: alice, body: 1, ref: 'b-1' },
        ],
      });
      expect(refused.status).toBe(403);
      expect(await refused.json()).toMatchObject({ code: 'forbidden', index: 1 });
      const messages = Array.from({ length: 30 }, (_, i) => ({
        conversation_id: i % 3 === 0 ? other : room,
        from: bob,
        body: i,
        ref: `batch-${i}`,
      }));
      const res = await api('/v1/messages', 'POST', { messages });
      expect(res.status).toBe(201);
      const answer = (await res.json()) as {
        messages: { id: string; conversation_id: string; ref: string }[];
      };
      expect(answer.messages.map((m) => m.ref)).toEqual(messages.map((m) => m.ref));
      const got = [];
      for (let i = 0; i < 30; i++) got.push(await nextBody(b));
      for (const conv of [room, other]) {
        expect(got.filter((m) => m.conversation_id === conv).map((m) => m.body)).toEqual(
          messages.filter((m) => m.conversation_id === conv).map((m) => m.body),
        );
      }
      expect((await api('/v1/messages', 'POST', { messages: [] })).status).toBe(400);
      // The bare array is accepted too.
      const bare = await api('/v1/messages', 'POST', [
        { conversation_id: room, from: bob, body: 'bare', ref: 'bare-1' },
      ]);
      expect(bare.status).toBe(201);
      expect((await nextBody(b)).body).toBe('bare');
    });
  });

  describe('membership API', () => {
    it('add and remove take effect for the next message', async () => {
      const [alice, carol, room] = [uid('alice'), uid('carol'), uid('room')];
      await put(room, [alice]);
      const c = await connect(carol);
      const add = await api(`/v1/conversations/${room}/members`, 'POST', { members: [carol] });
      expect(add.status).toBe(200);
      expect(await add.json()).toEqual({ id: room, changed: 1, member_count: 2 });
      const m1 = (await (await publish(room, { from: alice, body: 'welcome', ref: 'w' })).json()) as {
        id: string;
      };
      expect((await nextBody(c)).id).toBe(m1.id);
      // carol may now publish herself
      expect((await publish(room, { from: carol, body: 'hi', ref: 'c-1' })).status).toBe(201);
      expect((await nextBody(c)).body).toBe('hi');
      const del = await api(`/v1/conversations/${room}/members/${carol}`, 'DELETE');
      expect(await del.json()).toEqual({ id: room, changed: 1, member_count: 1 });
      // idempotent
      expect(await (await api(`/v1/conversations/${room}/members/${carol}`, 'DELETE')).json()).toEqual({
        id: room,
        changed: 0,
        member_count: 1,
      });
      await publish(room, { from: alice, body: 'not for carol', ref: 'n' });
      expect((await publish(room, { from: carol, body: 'x', ref: 'c-2' })).status).toBe(403);
      // carol is in another conversation too: the next thing she gets is from there, not the removed one.
      const side = uid('side');
      await put(side, [carol]);
      await publish(side, { from: carol, body: 'side', ref: 's' });
      expect((await nextBody(c)).body).toBe('side');
    });

    it('concurrent adds do not lose each other; list pages through everyone; the limit holds', async () => {
      const room = uid('room');
      const users = Array.from({ length: 60 }, (_, i) => uid(`u${String(i).padStart(2, '0')}-`));
      const answers = await Promise.all(
        users.map((u) => api(`/v1/conversations/${room}/members`, 'POST', { members: [u] })),
      );
      expect(answers.map((r) => r.status)).toEqual(users.map(() => 200));
      const listed: string[] = [];
      let after: string | null = null;
      do {
        const q: string = after ? `&after=${after}` : '';
        const page = (await (await api(`/v1/conversations/${room}/members?limit=7${q}`, 'GET')).json()) as {
          members: string[];
          next: string | null;
        };
        expect(page.members.length).toBeLessThanOrEqual(7);
        listed.push(...page.members);
        after = page.next;
      } while (after);
      expect(listed).toEqual([...users].sort());
      // MAX_CONVERSATION_MEMBERS=100: 41 more would make 101.
      const more = Array.from({ length: 41 }, (_, i) => uid(`v${i}-`));
      const over = await api(`/v1/conversations/${room}/members`, 'POST', { members: more });
      expect(over.status).toBe(400);
      expect(await over.json()).toMatchObject({ code: 'too_many_members' });
      const fits = await api(`/v1/conversations/${room}/members`, 'POST', { members: more.slice(1) });
      expect(await fits.json()).toMatchObject({ changed: 40, member_count: 100 });
      // remove in bulk, idempotently
      const rm = await api(`/v1/conversations/${room}/members/remove`, 'POST', {
        members: [...users, 'nobody'],
      });
      expect(await rm.json()).toEqual({ id: room, changed: 60, member_count: 40 });
      expect((await api(`/v1/conversations/${uid('ghost')}/members`, 'GET')).status).toBe(404);
      expect((await api(`/v1/conversations/${room}/members`, 'POST', { members: ['bad id'] })).status).toBe(
        400,
      );
    });
  });

  describe('events out', () => {
    it('a consumer with its own group reads records that validate against the published schema', async () => {
      const [alice, room] = [uid('alice'), uid('room')];
      const seen: Record<string, unknown>[] = [];
      // Subscribed first: the embedded engine keeps only what some group has not committed yet.
      const stop = await consumeStream(relay.app, `${name}-customer`, (r) => seen.push(r));
      try {
        await put(room, [alice]);
        await api(`/v1/conversations/${room}/members`, 'POST', { members: [uid('zed')] });
        const sent = (await (
          await publish(room, { from: alice, body: { n: 1 }, ref: 'stream-1' })
        ).json()) as {
          id: string;
        };
        await waitFor(() => seen.some((r) => r.id === sent.id), 30_000, 'the message on the stream');
        const mine = seen.filter((r) => r.conversation_id === room);
        expect(mine.map((r) => r.kind)).toEqual(['membership', 'membership', 'message']);
        expect(mine[0]).toMatchObject({ op: 'replaced', member_count: 1 });
        expect(mine[1]).toMatchObject({ op: 'added', members: [uid('zed')] });
        expect(mine[2]).toMatchObject({
          schema_version: 1,
          kind: 'message',
          id: sent.id,
          from: alice,
          body: { n: 1 },
          ref: 'stream-1',
        });
        for (const r of seen) {
          if (!validateRecord(r))
            throw new Error(`${JSON.stringify(r)}: ${JSON.stringify(validateRecord.errors)}`);
        }
        // WebSocket sends are on the stream too, in the same format.
        const a = await connect(alice);
        const ack = await a.sendMessage(room, 'via ws', 'ws-1');
        await waitFor(
          () => seen.find((r) => r.id === ack.msg_id),
          30_000,
          'the WebSocket send on the stream',
        );
        expect(validateRecord(seen.find((r) => r.id === ack.msg_id))).toBe(true);
      } finally {
        await stop();
      }
    });

    it('webhooks: every accepted message once (by id), in order, signed; through an outage and a restart', async () => {
      const [alice, bob, r1, r2] = [uid('alice'), uid('bob'), uid('room'), uid('room') + 'b'];
      await put(r1, [alice, bob]);
      await put(r2, [alice, bob]);
      const accepted: { id: string; conversation_id: string }[] = [];
      const send = async (n: number, tag: string) => {
        for (let i = 0; i < n; i++) {
          const conversation = i % 2 ? r1 : r2;
          const res = await publish(conversation, { from: alice, body: `${tag}-${i}`, ref: `${tag}-${i}` });
          expect(res.status).toBe(201);
          accepted.push({ ...((await res.json()) as { id: string }), conversation_id: conversation });
        }
      };
      const delivered = () => {
        const ids = new Set(receiver.unique().map((e) => e.id));
        return accepted.every((m) => ids.has(m.id));
      };
      const checkOrder = () => {
        for (const conv of [r1, r2]) {
          const got = receiver
            .unique()
            .filter((e: ReceivedEvent) => e.kind === 'message' && e.conversation_id === conv)
            .map((e) => e.id);
          expect(got).toEqual(accepted.filter((m) => m.conversation_id === conv).map((m) => m.id));
        }
        expect(receiver.badSignatures).toBe(0);
      };

      await send(20, 'live');
      await waitFor(delivered, 30_000, 'the live messages at the webhook');
      checkOrder();

      // The endpoint fails for a while: nothing is lost, clients are not held up.
      receiver.failing = true;
      const refusedBefore = receiver.refused;
      const b = await connect(bob);
      await send(20, 'outage');
      for (let i = 0; i < 20; i++) await nextBody(b); // client delivery goes on meanwhile
      await waitFor(
        () => receiver.refused > refusedBefore + 2,
        30_000,
        'retries against the failing endpoint',
      );
      receiver.failing = false;
      await waitFor(delivered, 30_000, 'the messages held during the outage');
      checkOrder();

      // Down while relay restarts: delivery resumes from the committed offsets.
      await receiver.stop();
      await send(10, 'before-restart');
      await relay.close();
      relay = await bootRelay(name, receiver.url);
      if (productionEngine) {
        await send(10, 'after-restart');
        await receiver.start();
        await waitFor(delivered, 60_000, 'every message after the restart');
        checkOrder();
      } else {
        // Embedded engine: the stream and the webhook offsets lived in the process; what was
        // pending is gone with it (documented), new messages flow again after the restart.
        const lost = accepted.splice(-10);
        await put(r1, [alice, bob]);
        await put(r2, [alice, bob]);
        await receiver.start();
        await send(10, 'after-restart');
        await waitFor(delivered, 30_000, 'the messages published after the restart');
        const ids = new Set(receiver.events.map((e) => e.id));
        expect(lost.filter((m) => ids.has(m.id))).toEqual([]);
        checkOrder();
      }
    });
  });
});

/**
 * A customer's consumer with a group of its own: a plain kafkajs consumer on the topic (production
 * engine), or MessageBus.consumeAsGroup (embedded engine, whose stream lives in the process).
 */
async function consumeStream(
  app: INestApplication,
  group: string,
  onRecord: (r: Record<string, unknown>) => void,
): Promise<() => Promise<void>> {
  if (!productionEngine) {
    const sub = await app.get(MessageBus).consumeAsGroup(group, async (batch) => {
      for (const r of batch.records) onRecord(r);
    });
    return () => sub.stop();
  }
  const { topic, brokers } = app.get(Config).kafka;
  const kafka = new Kafka({ clientId: group, brokers, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: group });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      onRecord(JSON.parse(message.value!.toString('utf8')) as Record<string, unknown>);
    },
  });
  return () => consumer.disconnect();
}
