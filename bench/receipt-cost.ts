/**
 * The cost of one read receipt (protocol v1.1) in a 10-member and a 1000-member conversation, and of
 * one message for comparison: MySQL round trips, rows and bytes written, deliveries. Boots the app
 * in-process on the production engines (Kafka + Redis + MySQL; `bash scripts/infra.sh up`) with its
 * own database, topic and key prefix, dropped at the end.
 *
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/receipt-cost.js
 *
 * Round trips are counted at the DataSource (every statement the router and gateway issue, transaction
 * control included) between the `read` frame and the first sender's copy of the receipt (the router's
 * push comes after its outbox and marker writes).
 */
import { randomUUID } from 'node:crypto';
import { DataSource, QueryRunner } from 'typeorm';
import WebSocket from 'ws';
import { startApp } from '../src/bootstrap';
import { loadConfig } from '../src/config/app-config';

interface Frame {
  type: string;
  msg_id?: string;
  payload?: { seq?: number; kind?: string; ref?: string };
}

class Client {
  private readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];
  constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      this.frames.push(JSON.parse(d.toString()) as Frame);
      for (const w of this.waiters.splice(0)) w();
    });
  }
  static async open(url: string): Promise<Client> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const c = new Client(ws);
    ws.send(JSON.stringify({ type: 'hello', payload: {} }));
    await c.next((f) => f.type === 'welcome');
    return c;
  }
  async next(match: (f: Frame) => boolean, timeoutMs = 30_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(match);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error('timed out waiting for a frame');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }
  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }
}

/** Counts every statement issued through the DataSource's query runners. */
function countStatements(ds: DataSource): { count: () => number; reset: () => void; log: string[] } {
  let n = 0;
  const log: string[] = [];
  const note = (sql: unknown) => {
    n++;
    log.push(String(sql).trim().split(/\s+/).slice(0, 4).join(' '));
  };
  // DataSource.query runs on a query runner of its own: counting the runners counts every statement once.
  const create = ds.createQueryRunner.bind(ds);
  ds.createQueryRunner = ((...args: Parameters<DataSource['createQueryRunner']>) => {
    const qr: QueryRunner = create(...args);
    const q = qr.query.bind(qr);
    qr.query = ((...a: Parameters<QueryRunner['query']>) => {
      note(a[0]);
      return q(...a);
    }) as QueryRunner['query'];
    return qr;
  }) as DataSource['createQueryRunner'];
  return {
    count: () => n,
    reset: () => {
      n = 0;
      log.length = 0;
    },
    log,
  };
}

async function tableState(ds: DataSource) {
  const [row]: Record<string, number | string | null>[] = await ds.query(`SELECT
    (SELECT COUNT(*) FROM outbox_delivery) AS deliveries,
    (SELECT COUNT(*) FROM outbox_entry) AS entries,
    (SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox_entry) AS payload_bytes,
    (SELECT COALESCE(SUM(LENGTH(user_id) + LENGTH(entry_id) + 8 + 8 + 4 + 4), 0) FROM outbox_delivery) AS delivery_bytes,
    (SELECT COUNT(*) FROM receipt_marker) AS markers`);
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)]));
}

async function main(): Promise<void> {
  const run = randomUUID().replace(/-/g, '').slice(0, 8);
  const database = `relay_bench_receipts_${run}`;
  const admin = new DataSource({ type: 'mysql', url: 'mysql://root@127.0.0.1:3306/mysql' });
  await admin.initialize();
  await admin.query(`CREATE DATABASE \`${database}\``);
  const config = loadConfig({
    ...process.env,
    ENGINE: 'production',
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'warn',
    DEBUG_CONSOLE: 'false',
    MYSQL_URL: `mysql://root@127.0.0.1:3306/${database}`,
    KAFKA_TOPIC: `relay-bench-receipts-${run}`,
    KAFKA_GROUP_ID: `relay-bench-receipts-${run}`,
    REDIS_KEY_PREFIX: `relay-bench-receipts-${run}:`,
  });
  const app = await startApp(config);
  const { port } = app.getHttpServer().address() as { port: number };
  const http = `http://127.0.0.1:${port}`;
  const ws = `ws://127.0.0.1:${port}/ws`;
  const ds = app.get(DataSource);
  const statements = countStatements(ds);
  let n = 0;
  try {
    console.log(
      `read receipt cost (production engines; RECEIPTS_FANOUT_MAX_MEMBERS=${config.receipts.fanoutMaxMembers})`,
    );
    for (const size of [10, 1000]) {
      const conv = `bench-${run}-${size}`;
      const members = Array.from({ length: size }, (_, i) => `u${i}-${run}-${size}`);
      await fetch(`${http}/v1/conversations/${conv}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ members }),
      });
      // Three senders, one message each; the reader is the last member.
      const senders = await Promise.all(members.slice(0, 3).map((u) => Client.open(`${ws}?user_id=${u}`)));
      const reader = await Client.open(`${ws}?user_id=${members[size - 1]}`);
      let messageCost = '';
      for (const [i, s] of senders.entries()) {
        const before = await tableState(ds);
        statements.reset();
        const ref = `r${++n}`;
        s.send({
          type: 'send',
          msg_id: ref,
          payload: { conversation_id: conv, body: { text: 'x'.repeat(100) } },
        });
        await s.next((f) => f.type === 'ack' && f.payload?.ref === ref);
        await reader.next((f) => f.type === 'message');
        const trips = statements.count();
        if (process.env.BENCH_TRACE && i === 0) console.log(statements.log);
        const after = await tableState(ds);
        if (i === 0) {
          messageCost = `one message (100-byte body): ${trips} MySQL round trips, ${after.entries - before.entries} entry row (${after.payload_bytes - before.payload_bytes} payload bytes) + ${after.deliveries - before.deliveries} delivery rows (~${after.delivery_bytes - before.delivery_bytes} bytes)`;
        }
      }
      for (const s of senders) await s.next((f) => f.type === 'message' && f.payload?.seq === 3);
      const before = await tableState(ds);
      statements.reset();
      const t0 = performance.now();
      reader.send({ type: 'read', payload: { conversation_id: conv, seq: 3 } });
      // The first sender gets it in both sizes (the reader only in small conversations).
      const own = await senders[0].next((f) => f.type === 'receipt');
      const ms = performance.now() - t0;
      const trips = statements.count();
      if (process.env.BENCH_TRACE) console.log(statements.log);
      const after = await tableState(ds);
      const got = await Promise.all(
        senders.slice(1).map((s) =>
          s
            .next((f) => f.type === 'receipt', 5_000)
            .then(() => 1)
            .catch(() => 0),
        ),
      );
      console.log(`${size} members:`);
      console.log(`  ${messageCost}`);
      console.log(
        `  one read receipt (seq ${own.payload?.seq}): ${trips} MySQL round trips, 1 Kafka record, rows written: ${after.entries - before.entries} entry (${after.payload_bytes - before.payload_bytes} payload bytes) + ${after.deliveries - before.deliveries} delivery rows (~${after.delivery_bytes - before.delivery_bytes} bytes) + ${after.markers - before.markers} new marker row (upsert), deliveries: ${after.deliveries - before.deliveries} (connected senders that got it: ${1 + got.reduce((a, b) => a + b, 0)}/3), read -> first sender's receipt ${ms.toFixed(1)} ms`,
      );
      for (const c of [...senders, reader]) c.ws.terminate();
    }
  } finally {
    await app.close();
    await admin.query(`DROP DATABASE IF EXISTS \`${database}\``);
    await admin.destroy();
  }
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
