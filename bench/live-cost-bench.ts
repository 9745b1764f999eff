/**
 * Cost of one v1.1 ephemeral event on the production engine (Redis), per conversation size:
 * a typing `start` and a presence change, measured on the real drivers the gateway uses.
 *
 *   npm run bench:live            (needs the Redis of scripts/infra.sh; REDIS_URL to override)
 *
 * Setup: NODES gateway nodes (each its own Redis connections and node channel), every member of the
 * conversation online with one connection, spread round-robin over the nodes; every node watches
 * every member (a presence subscriber on each node). Figures per event: Redis round trips made by the
 * emitting node (counted from the calls below: each awaited call is one round trip), bytes that node
 * wrote to and read from Redis (its socket counters), publishes, bytes the subscribed nodes received,
 * and deliveries (recipient connections reached), plus the median wall time over ITERATIONS events.
 */
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { Config } from '../src/config/config.module';
import { RedisPresenceDriver } from '../src/presence/drivers/redis-presence.driver';
import { RedisConnections } from '../src/redis/redis.module';
import { RedisChannelDriver } from '../src/session/drivers/redis-channel.driver';
import { EphemeralBatch } from '../src/session/node-channel';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const NODES = 4;
const ITERATIONS = 50;
const TTL_MS = 60_000;

interface Node {
  id: string;
  connections: RedisConnections;
  store: RedisPresenceDriver;
  channel: RedisChannelDriver;
  received: { batches: number; bytes: number; deliveries: number };
}

function socketOf(c: RedisConnections): Socket {
  return (c.command as unknown as { stream: Socket }).stream;
}

async function makeNode(prefix: string, i: number): Promise<Node> {
  const id = `bench-gw${i}`;
  const connections = new RedisConnections({
    nodeId: id,
    redis: { url: REDIS_URL, keyPrefix: prefix },
  } as Config);
  const node: Node = {
    id,
    connections,
    store: new RedisPresenceDriver(connections, TTL_MS),
    channel: new RedisChannelDriver(connections),
    received: { batches: 0, bytes: 0, deliveries: 0 },
  };
  await node.channel.subscribe(id, { onBatch: () => undefined, onResync: () => undefined });
  node.channel.listenEphemeral((b: EphemeralBatch) => {
    node.received.batches++;
    node.received.bytes += Buffer.byteLength(JSON.stringify(b));
    for (const t of b.typing ?? []) node.received.deliveries += t.t.length;
    node.received.deliveries += b.presence?.length ?? 0;
  });
  await connections.command.ping();
  return node;
}

function routeToBatches(
  routes: Map<string, string[]>,
  conv: string,
  user: string,
): Map<string, EphemeralBatch> {
  const batches = new Map<string, EphemeralBatch>();
  for (const [node, users] of routes) {
    batches.set(node, { kind: 'ephemeral', typing: [{ c: conv, u: user, s: 'start', x: 6000, t: users }] });
  }
  return batches;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function settle(nodes: Node[], expect: (n: Node[]) => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!expect(nodes) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
}

async function measure(members: number, nodes: Node[]): Promise<void> {
  const [emitter] = nodes;
  const tag = randomUUID().slice(0, 6);
  const users = Array.from({ length: members }, (_, i) => `m${i}-${tag}`);
  const conv = `conv-${members}-${tag}`;
  // Everyone online somewhere; every node watches everyone (a presence subscriber on each node).
  await Promise.all(
    nodes.map((n, i) =>
      n.store.connected(
        n.id,
        users.filter((_, j) => j % NODES === i),
      ),
    ),
  );
  const watchSock = socketOf(nodes[1].connections);
  const w0 = { out: watchSock.bytesWritten, in: watchSock.bytesRead };
  await nodes[1].store.watch(nodes[1].id, users);
  const watchCost = { out: watchSock.bytesWritten - w0.out, in: watchSock.bytesRead - w0.in };
  await Promise.all(nodes.filter((_, i) => i !== 1).map((n) => n.store.watch(n.id, users)));

  // ---- typing: one relayed start (a fresh conversation slot each time, so the 2 s slot never throttles) ----
  const sock = socketOf(emitter.connections);
  const before = { out: sock.bytesWritten, in: sock.bytesRead };
  const recv0 = nodes.map((n) => ({ ...n.received }));
  const times: number[] = [];
  let publishes = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    const typer = users[i % members];
    const recipients = users.filter((u) => u !== typer);
    const t0 = process.hrtime.bigint();
    const c = `${conv}.${String(i).padStart(2, '0')}`; // same length every time
    const routes = await emitter.store.typingRoute(typer, c, 'start', recipients, 2_000); // round trip 1
    await emitter.channel.publishEphemeral(routeToBatches(routes!, c, typer)); // round trip 2
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    publishes += routes!.size;
  }
  const expected = ITERATIONS * (members - 1);
  await settle(
    nodes,
    (ns) => ns.reduce((n, x, i) => n + x.received.deliveries - recv0[i].deliveries, 0) >= expected,
  );
  const out = (sock.bytesWritten - before.out) / ITERATIONS;
  const inn = (sock.bytesRead - before.in) / ITERATIONS;
  const delivered =
    nodes.reduce((n, x, i) => n + x.received.deliveries - recv0[i].deliveries, 0) / ITERATIONS;
  const recvBytes = nodes.reduce((n, x, i) => n + x.received.bytes - recv0[i].bytes, 0) / ITERATIONS;
  console.log(
    `typing start, ${String(members).padStart(4)} members: 2 Redis round trips (1 EVALSHA reading ${members - 1} presence hashes + 1 pipeline of ${publishes / ITERATIONS} PUBLISH), ` +
      `${Math.round(out)} B written / ${Math.round(inn)} B read by the typer's node, ${Math.round(recvBytes)} B of batches received by ${NODES} nodes, ` +
      `${delivered} deliveries, median ${median(times).toFixed(2)} ms`,
  );

  // ---- presence: one user going online then offline (both flips) ----
  const pTimes: number[] = [];
  const pBefore = { out: sock.bytesWritten, in: sock.bytesRead };
  const precv0 = nodes.map((n) => ({ ...n.received }));
  let flips = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    const u = users[i % members];
    const t0 = process.hrtime.bigint();
    await emitter.store.left(emitter.id, [u], 0); // last connection closed, no grace
    await nodes.slice(1).reduce((p, n) => p.then(() => n.store.left(n.id, [u], 0)), Promise.resolve());
    const off = await emitter.store.sweep(500);
    const on = await emitter.store.connected(emitter.id, [u]);
    for (const change of [...off, ...on]) {
      flips++;
      const batches = new Map<string, EphemeralBatch>();
      for (const w of change.watchers) {
        batches.set(w, {
          kind: 'ephemeral',
          presence: [{ u: change.userId, on: change.online, v: change.version }],
        });
      }
      await emitter.channel.publishEphemeral(batches);
    }
    pTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  await settle(
    nodes,
    (ns) => ns.reduce((n, x, i) => n + x.received.deliveries - precv0[i].deliveries, 0) >= flips * NODES,
  );
  const pRecv = nodes.reduce((n, x, i) => n + x.received.batches - precv0[i].batches, 0) / flips;
  const pBytes = nodes.reduce((n, x, i) => n + x.received.bytes - precv0[i].bytes, 0) / flips;
  // Node-side bytes include the other nodes' `left` calls made from their own sockets (not counted).
  console.log(
    `presence change, ${String(members).padStart(4)} members: online = 1 EVALSHA + 1 publish pipeline; offline = 1 HDEL+ZADD pipeline + a share of 1 sweep EVALSHA + 1 publish pipeline; ` +
      `${Math.round((sock.bytesWritten - pBefore.out) / flips)} B written / ${Math.round((sock.bytesRead - pBefore.in) / flips)} B read per flip by the emitting node, ` +
      `${pRecv} PUBLISH (one per watching node) carrying ${Math.round(pBytes)} B, whatever the conversation size; median ${median(pTimes).toFixed(2)} ms per online+offline pair`,
  );
  console.log(
    `presence.subscribe snapshot, ${String(members).padStart(4)} members: 1 EVALSHA (HSET+PEXPIRE+HMGET inside, per member the node did not watch yet), ` +
      `${watchCost.out} B written / ${watchCost.in} B read`,
  );
}

async function main(): Promise<void> {
  const prefix = `relay-bench-live:${randomUUID()}:`;
  const nodes = await Promise.all(Array.from({ length: NODES }, (_, i) => makeNode(prefix, i)));
  try {
    for (const members of [10, 1000]) await measure(members, nodes);
  } finally {
    const keys = await nodes[0].connections.command.keys(`${prefix}*`);
    for (let i = 0; i < keys.length; i += 500)
      await nodes[0].connections.command.del(...keys.slice(i, i + 500));
    for (const n of nodes) await n.channel.unsubscribe();
    await Promise.all(nodes.map((n) => n.connections.onApplicationShutdown()));
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
