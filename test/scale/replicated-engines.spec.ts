import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { createConnection } from 'mysql2/promise';
import { jumpHash } from '../../src/outbox/sharding/shard-placement';
import { keySlot } from '../../src/redis/key-slot';
import { databaseFor, isolatedEngineEnv, mysqlAdmin } from '../support/backends';
import { NodeProcess, startNode, stopNode } from '../support/cluster';
import { waitFor } from '../support/wait-for';
import { Frame, TestClient } from '../support/ws-client';
import {
  INFRA_DIR,
  INFRA_SCRIPT,
  KAFKA_CLUSTER_BROKERS,
  OUTBOX_SHARD_PORT,
  REDIS_CLUSTER_NODES,
} from './scale-env';

/**
 * relay on replicated engines: 2 gateways + 2 routers (real processes) on the 3-broker Kafka cluster
 * (replication 3, min.insync.replicas 2), the 3-master Redis Cluster and a 2-shard outbox (MariaDB on
 * 3306 and the second mariadbd of `scripts/infra.sh mariadb-shards`), with the fault suite's check:
 * every acked message reaches every member device exactly once, in order.
 *
 * Clients behave like the SDK: a send that is refused or unanswered is retried with the same ref
 * until it is acked, so "acked" is the set the check holds relay to.
 */
const run = randomUUID().slice(0, 8);
const database = databaseFor(`scale-${run}`);
const base = isolatedEngineEnv(`scale-${run}`);
const shardUrls = [
  `mysql://root@127.0.0.1:3306/${database}`,
  `mysql://root@127.0.0.1:${OUTBOX_SHARD_PORT}/${database}`,
];
const env = {
  ...base,
  MYSQL_URL: shardUrls[0], // the directory
  OUTBOX_SHARDS: shardUrls.join(','),
  NODE_ENV: 'test',
  LOG_LEVEL: 'warn',
  HEARTBEAT_MS: '500',
  SEND_RATE_PER_SEC: '10000',
  SEND_BURST: '10000',
  KAFKA_BROKERS: KAFKA_CLUSTER_BROKERS.join(','),
  KAFKA_REPLICATION_FACTOR: '3',
  REDIS_CLUSTER_NODES: REDIS_CLUSTER_NODES.join(','),
};
const shardServer = `mysql://root@127.0.0.1:${OUTBOX_SHARD_PORT}`;
const gatewayEnv = { ...env, APP_ROLES: 'gateway' };
const routerEnv = { ...env, APP_ROLES: 'router' };
const topic = base.KAFKA_TOPIC;

jest.setTimeout(300_000);

/** Async: the clients must keep answering the gateways' pings while a broker starts. */
async function infra(...args: string[]): Promise<void> {
  const { stdout } = await promisify(execFile)('bash', [INFRA_SCRIPT, ...args], { timeout: 240_000 });
  process.stdout.write(stdout);
}

function pidFile(path: string): number {
  const pid = Number(readFileSync(path, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no pid in ${path}`);
  return pid;
}

/** kill -9 of broker `id` of the kafka-cluster; returns when the process is gone. */
async function killBroker(id: number): Promise<void> {
  const pid = pidFile(join(INFRA_DIR, 'kafka-cluster', `broker-${id}`, 'kafka.pid'));
  process.kill(pid, 'SIGKILL');
  await waitFor(
    () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    },
    10_000,
    `broker ${id} (pid ${pid}) to die`,
  );
}

/** A kafkajs client of the 3-broker cluster (admin and probes of the tests). */
function clusterKafka(): Kafka {
  return new Kafka({ clientId: 'scale-test', brokers: KAFKA_CLUSTER_BROKERS, logLevel: logLevel.NOTHING });
}

/** A user's devices and everything they received, in order (with arrival times, for the figures). */
class Member {
  readonly devices: TestClient[] = [];
  private readonly arrivals: number[][] = [];
  constructor(readonly user: string) {}
  add(device: TestClient): void {
    const times: number[] = [];
    this.arrivals.push(times);
    this.devices.push(device);
    device.ws.on('message', (data: Buffer) => {
      if ((JSON.parse(data.toString()) as Frame).type === 'message') times.push(Date.now());
    });
  }
  received(device: number): string[] {
    return this.devices[device].frames
      .filter((f) => f.type === 'message')
      .map((f) => f.payload!.id as string);
  }
  /** The longest pause between two consecutive messages on any of the user's devices. */
  longestDeliveryGap(): number {
    return Math.max(...this.arrivals.map((t) => Math.max(0, ...t.slice(1).map((x, i) => x - t[i]))));
  }
}

describe('scale: relay on a 3-broker Kafka cluster and a Redis Cluster', () => {
  let gw1: NodeProcess, gw2: NodeProcess, r1: NodeProcess, r2: NodeProcess;
  const clients: TestClient[] = [];
  const connect = async (node: NodeProcess, user: string) => {
    const { client } = await TestClient.connect(`${node.ws}?user_id=${user}`);
    clients.push(client);
    return client;
  };
  /** Members with their devices: `[user, nodes...]`, one connection per node listed. */
  const membersOn = async (...layout: [string, ...NodeProcess[]][]): Promise<Member[]> => {
    const out: Member[] = [];
    for (const [user, ...nodes] of layout) {
      const m = new Member(user);
      for (const node of nodes) m.add(await connect(node, user));
      out.push(m);
    }
    return out;
  };
  const put = async (id: string, members: string[]) => {
    const res = await fetch(`${gw1.http}/v1/conversations/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ members }),
    });
    expect(res.status).toBe(200);
  };

  /** Sends until acked (same ref on every retry); returns the message id and the failed attempts' codes. */
  async function sendUntilAcked(
    client: TestClient,
    conversation: string,
    body: unknown,
    ref: string,
  ): Promise<{ id: string; refusals: string[] }> {
    const refusals: string[] = [];
    for (let attempt = 0; attempt < 60; attempt++) {
      let frame: Frame;
      try {
        frame = await client.sendMessage(conversation, body, ref, 15_000);
      } catch (err) {
        refusals.push(`no answer (${(err as Error).message.slice(0, 80)})`);
        continue;
      }
      if (frame.type === 'ack') return { id: frame.msg_id!, refusals };
      refusals.push(String(frame.payload?.code ?? 'error'));
      await new Promise((r) => setTimeout(r, 200)); // client back-off before the retry, as the SDK does
    }
    throw new Error(
      `send ${ref} never acked: ${[...new Set(refusals)].join(',')}\n--- gateway-1 ---\n${gw1.output.join('').slice(-3000)}`,
    );
  }

  /** A stream of sends; `at(i)` runs before send i (the fault injection). Records ack times. */
  async function stream(
    sender: TestClient,
    conversation: string,
    total: number,
    at: (i: number) => Promise<void>,
  ): Promise<{ acked: string[]; ackTimes: number[]; refusals: string[] }> {
    const acked: string[] = [];
    const ackTimes: number[] = [];
    const refusals: string[] = [];
    for (let i = 0; i < total; i++) {
      await at(i);
      const r = await sendUntilAcked(sender, conversation, { i }, `${conversation}-${i}`);
      acked.push(r.id);
      ackTimes.push(Date.now());
      refusals.push(...r.refusals);
    }
    return { acked, ackTimes, refusals };
  }

  /** The Jepsen-style check on every device of every member. */
  async function expectExactlyOnceInOrder(members: Member[], acked: string[]): Promise<void> {
    for (const m of members) {
      for (let d = 0; d < m.devices.length; d++) {
        await waitFor(
          () => acked.every((id) => m.received(d).includes(id)),
          60_000,
          `${m.user}'s device ${d} to have all ${acked.length} acked messages`,
        );
        const got = m.received(d);
        expect(new Set(got).size).toBe(got.length); // nothing twice
        expect(got.filter((id) => acked.includes(id))).toEqual(acked); // all, in order
      }
    }
  }

  beforeAll(async () => {
    await mysqlAdmin(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
    await mysqlAdmin(`CREATE DATABASE IF NOT EXISTS \`${database}\``, shardServer);
    r1 = await startNode('scale-router-1', routerEnv);
    [r2, gw1, gw2] = await Promise.all([
      startNode('scale-router-2', routerEnv),
      startNode('scale-gateway-1', gatewayEnv),
      startNode('scale-gateway-2', gatewayEnv),
    ]);
  });

  /** Kafka admin/producer clients a test opened: closed even when the test fails midway (or jest hangs). */
  const kafkaClients: { disconnect(): Promise<void> }[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.terminate();
    await Promise.all(kafkaClients.splice(0).map((k) => k.disconnect().catch(() => undefined)));
  });

  afterAll(async () => {
    await Promise.all([gw1, gw2, r1, r2].filter(Boolean).map((n) => stopNode(n)));
    // Leave the clusters whole for the next run (restarts whatever a test killed).
    await infra('kafka-cluster', 'up');
    await infra('redis-cluster', 'up');
    await infra('mariadb-shards', 'up');
    await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``);
    await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``, shardServer);
  });

  it('the topic is replicated 3 ways with min.insync.replicas=2', async () => {
    const kafka = clusterKafka();
    const admin = kafka.admin();
    kafkaClients.push(admin);
    await admin.connect();
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      for (const p of topics[0].partitions) expect(p.replicas).toHaveLength(3);
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: 2 /* TOPIC */, name: topic, configNames: ['min.insync.replicas'] }],
      });
      expect(
        resources[0].configEntries.find((e) => e.configName === 'min.insync.replicas')?.configValue,
      ).toBe('2');
    } finally {
      await admin.disconnect();
    }
  });

  it('kill -9 of the partition leader mid-stream: acks continue, every acked message reaches every device once, in order', async () => {
    await put('kk', ['ann', 'ben', 'cyd']);
    const [ann, ben, cyd] = await membersOn(['ann', gw1], ['ben', gw1, gw2], ['cyd', gw2]);

    const kafka = clusterKafka();
    const admin = kafka.admin();
    kafkaClients.push(admin);
    await admin.connect();
    let killedAt = 0;
    let victim = 0;
    const total = 150;
    const result = await stream(ann.devices[0], 'kk', total, async (i) => {
      if (i !== 40) return;
      // The conversation's partition is the one that has records; kill its leader.
      const offsets = await admin.fetchTopicOffsets(topic);
      const partition = offsets.find((o) => Number(o.high) > 0)!.partition;
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      victim = topics[0].partitions.find((p) => p.partitionId === partition)!.leader;
      killedAt = Date.now();
      await killBroker(victim);
    });
    await admin.disconnect();
    expect(result.acked).toHaveLength(total);
    await expectExactlyOnceInOrder([ann, ben, cyd], result.acked);

    const firstAckAfter = result.ackTimes[40] - killedAt;
    const maxGap = Math.max(...result.ackTimes.slice(1).map((t, i) => t - result.ackTimes[i]));
    console.log(
      `kafka leader (broker ${victim}) kill -9: first ack after the kill in ${firstAckAfter} ms, ` +
        `longest gap between acks ${maxGap} ms, longest pause in deliveries on a device ` +
        `${Math.max(ben.longestDeliveryGap(), cyd.longestDeliveryGap())} ms, ` +
        `refused/retried sends: ${result.refusals.length} (${[...new Set(result.refusals)].join(',') || '-'})`,
    );
    const t0 = Date.now();
    await infra('kafka-cluster', 'up');
    console.log(`broker ${victim} restarted and registered in ${Date.now() - t0} ms`);
  });

  it('with 2 of 3 brokers down a send is refused (unavailable), not acked; acked and delivered once the brokers are back', async () => {
    await put('isr', ['dee', 'eli']);
    const dee = await connect(gw1, 'dee');
    const eli = await connect(gw2, 'eli');
    const kafka = clusterKafka();
    const admin = kafka.admin();
    kafkaClients.push(admin);
    await admin.connect();
    const before = await admin.fetchTopicOffsets(topic);
    const warm = await dee.sendMessage('isr', 'before', 'isr-0', 20_000);
    expect(warm.type).toBe('ack');
    // The conversation's partition: the one whose high mark the acked send moved.
    const after = await admin.fetchTopicOffsets(topic);
    const partition = after.find(
      (o) => Number(o.high) > Number(before.find((b) => b.partition === o.partition)!.high),
    )!.partition;
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    const survivor = topics[0].partitions.find((p) => p.partitionId === partition)!.leader;
    // A probe topic led by the same broker, replicated to the same two others: the broker's own answer.
    const probe = `${topic}-probe`;
    // Not kafkajs's waitForLeaders: a busy broker answers its metadata probe with
    // UNKNOWN_TOPIC_OR_PARTITION and it gives up (seen here); wait for the leader ourselves.
    await admin.createTopics({
      waitForLeaders: false,
      topics: [
        {
          topic: probe,
          replicaAssignment: [
            { partition: 0, replicas: [survivor, ...[1, 2, 3].filter((b) => b !== survivor)] },
          ],
        },
      ],
    });
    // Asked of the survivor itself: the cluster's view can list the leader before that broker has
    // applied the new topic, and once its two peers are killed (no KRaft quorum) it never will, and
    // answers the probe below with UNKNOWN_TOPIC_OR_PARTITION.
    const raw = new Kafka({
      clientId: 'scale-probe',
      brokers: [KAFKA_CLUSTER_BROKERS[survivor - 1]],
      logLevel: logLevel.NOTHING,
      requestTimeout: 5_000,
      retry: { retries: 0 },
    });
    const survivorAdmin = raw.admin();
    kafkaClients.push(survivorAdmin);
    await survivorAdmin.connect();
    await waitFor(
      async () => {
        try {
          const meta = await survivorAdmin.fetchTopicMetadata({ topics: [probe] });
          return meta.topics[0].partitions[0]?.leader === survivor;
        } catch {
          return false;
        }
      },
      30_000,
      `broker ${survivor} to know itself as the probe topic's leader`,
    );
    await survivorAdmin.disconnect();
    // Kill the partition's two followers: the leader survives and alone is below min.insync.replicas,
    // so with acks=all it must not ack.
    await Promise.all([1, 2, 3].filter((b) => b !== survivor).map((b) => killBroker(b)));
    const refused = await dee.sendMessage('isr', 'during', 'isr-1', 60_000);
    expect(refused.type).toBe('error');
    expect(refused.payload?.code).toBe('unavailable');
    // The broker itself: the leader is up and takes an acks=1 write, but refuses acks=all (below min ISR).
    const producer = raw.producer({ retry: { retries: 0 } });
    kafkaClients.push(producer);
    await producer.connect();
    const leaderAlive = await producer.send({
      topic: probe,
      acks: 1,
      messages: [{ partition: 0, value: 'one' }],
    });
    expect(leaderAlive[0].errorCode).toBe(0);
    const refusedByBroker = await producer
      .send({ topic: probe, acks: -1, timeout: 3_000, messages: [{ partition: 0, value: 'all' }] })
      .then(
        () => null,
        (err: Error & { type?: string }) => err.type ?? err.message,
      );
    await producer.disconnect();
    await admin.disconnect();
    console.log(`leader ${survivor} alone: acks=1 write accepted, acks=all refused with ${refusedByBroker}`);
    expect(refusedByBroker).not.toBeNull();
    const reason = [...gw1.output.join('').matchAll(/publish failed: ([^\n]*)/g)].at(-1)?.[1] ?? '?';
    console.log(
      `send with only the leader (broker ${survivor}) alive refused; gateway-1: ${reason.slice(0, 160)}`,
    );

    const t0 = Date.now();
    await infra('kafka-cluster', 'up');
    const { id, refusals } = await sendUntilAcked(dee, 'isr', 'during', 'isr-1');
    console.log(
      `2 brokers restarted; the refused send acked ${Date.now() - t0} ms later (after ${refusals.length} more refusals)`,
    );
    await waitFor(
      () => eli.frames.some((f) => f.type === 'message' && f.payload?.id === id),
      60_000,
      'the retried send to be delivered',
    );
    const got = eli.frames.filter((f) => f.type === 'message').map((f) => f.payload!.id as string);
    expect(got.filter((x) => x === id)).toHaveLength(1);
    expect(got[0]).toBe(warm.msg_id);
  });

  it('kill -9 of the Redis master holding a gateway node channel during traffic: it resubscribes, every acked message reaches every device once, in order', async () => {
    await put('rr', ['fin', 'gil', 'hoa']);
    const [fin, gil, hoa] = await membersOn(['fin', gw1], ['gil', gw1, gw2], ['hoa', gw2]);

    // The master serving gateway-2's sharded channel `<prefix>node:{scale-gateway-2}`.
    const channel = `${base.REDIS_KEY_PREFIX}node:{scale-gateway-2}`;
    const cluster = new Cluster(
      REDIS_CLUSTER_NODES.map((n) => ({ host: n.split(':')[0], port: Number(n.split(':')[1]) })),
    );
    await cluster.ping();
    const owner = cluster.slots[keySlot(channel)][0];
    await cluster.quit();
    const port = owner.split(':')[1];
    const pid = pidFile(join(INFRA_DIR, 'redis-cluster', port, 'redis.pid'));

    let killedAt = 0;
    const total = 150;
    const result = await stream(fin.devices[0], 'rr', total, async (i) => {
      if (i !== 40) return;
      killedAt = Date.now();
      process.kill(pid, 'SIGKILL');
    });
    expect(result.acked).toHaveLength(total);
    await expectExactlyOnceInOrder([fin, gil, hoa], result.acked);

    const firstAckAfter = result.ackTimes[40] - killedAt;
    const maxGap = Math.max(...result.ackTimes.slice(1).map((t, i) => t - result.ackTimes[i]));
    const resubscribed = gw2.output.join('').includes('resubscribed');
    console.log(
      `redis master ${owner} kill -9: first ack after the kill in ${firstAckAfter} ms, longest gap between acks ` +
        `${maxGap} ms, longest pause in deliveries on a device ` +
        `${Math.max(gil.longestDeliveryGap(), hoa.longestDeliveryGap())} ms, refused/retried sends: ${result.refusals.length} (${[...new Set(result.refusals)].join(',') || '-'}), ` +
        `gateway-2 resubscribed: ${resubscribed}`,
    );
    expect(resubscribed).toBe(true);

    // After the failover, a new message reaches gateway-2's devices live.
    const after = await sendUntilAcked(fin.devices[0], 'rr', 'after', 'rr-after');
    const t0 = Date.now();
    await waitFor(
      () => hoa.received(0).includes(after.id),
      20_000,
      'a live push on gateway-2 after the failover',
    );
    console.log(`push after failover delivered in ${Date.now() - t0} ms`);
    await infra('redis-cluster', 'up');
  });

  it('kill -9 of an outbox shard mid-stream, then its restart: members on both shards get every acked message once, in order', async () => {
    // Members on each shard (placement is a pure function of the user id), one with two devices.
    const onShard = (shard: number, n: number) => {
      const out: string[] = [];
      for (let i = 0; out.length < n; i++) if (jumpHash(`sh${i}`, 2) === shard) out.push(`sh${i}`);
      return out;
    };
    const [s0a, s0b] = onShard(0, 2);
    const [s1a, s1b] = onShard(1, 2);
    await put('ss', [s0a, s0b, s1a, s1b]);
    const members = await membersOn([s0a, gw1], [s0b, gw2], [s1a, gw1, gw2], [s1b, gw2]);

    const pid = pidFile(join(INFRA_DIR, 'mariadb-shards', String(OUTBOX_SHARD_PORT), 'mysqld.pid'));
    let killedAt = 0;
    let restarted: Promise<number> | null = null;
    const total = 150;
    const result = await stream(members[0].devices[0], 'ss', total, async (i) => {
      if (i === 40) {
        killedAt = Date.now();
        process.kill(pid, 'SIGKILL');
      }
      // Acks go on (Kafka has the messages) while shard 1 is down; bring it back mid-stream.
      if (i === 80) {
        const t0 = Date.now();
        restarted = infra('mariadb-shards', 'up').then(() => Date.now() - t0);
        await restarted;
      }
    });
    expect(result.acked).toHaveLength(total);
    await expectExactlyOnceInOrder(members, result.acked);

    // Each member's deliveries sit on that member's shard, and only there.
    for (const [server, mine, theirs] of [
      [undefined, [s0a, s0b], [s1a, s1b]],
      [shardServer, [s1a, s1b], [s0a, s0b]],
    ] as const) {
      const db = await createConnection(`${server ?? 'mysql://root@127.0.0.1:3306'}/${database}`);
      const [rows] = await db.query(
        'SELECT user_id, COUNT(*) AS n, COUNT(DISTINCT entry_id) AS d FROM outbox_delivery WHERE user_id IN (?) GROUP BY user_id',
        [[...mine, ...theirs]],
      );
      await db.end();
      const counts = Object.fromEntries(
        (rows as { user_id: string; n: number; d: number }[]).map((r) => [
          r.user_id,
          [Number(r.n), Number(r.d)],
        ]),
      );
      expect(counts).toEqual(Object.fromEntries(mine.map((u) => [u, [total, total]])));
    }
    const maxGap = Math.max(...result.ackTimes.slice(1).map((t, i) => t - result.ackTimes[i]));
    console.log(
      `outbox shard ${OUTBOX_SHARD_PORT} kill -9 at send 40, restarted at send 80 in ${await restarted!} ms: ` +
        `longest gap between acks ${maxGap} ms, longest pause in deliveries on a device ` +
        `${Math.max(...members.map((m) => m.longestDeliveryGap()))} ms (shard-0 members: ` +
        `${Math.max(members[0].longestDeliveryGap(), members[1].longestDeliveryGap())} ms), ` +
        `refused/retried sends: ${result.refusals.length}, killed ${Date.now() - killedAt} ms ago`,
    );
  });
});
