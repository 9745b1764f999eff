/**
 * `npm run bench:heap`: what one idle connection keeps on relay's heap, item by item.
 *
 * Starts relay (`dist/main.js`, embedded engine, the peers bench's environment) in a child process
 * with heap-probe.js preloaded, opens idle connections from this process (dev auth `?user_id=`,
 * hello, wait for `welcome`, then nothing), and after a forced GC writes a heap snapshot at each count
 * of HEAP_COUNTS. The last two snapshots are diffed and divided by the connections between them:
 *
 * - by constructor: objects (by constructor name), closures, strings, arrays (by V8's internal name),
 *   with count and bytes per connection;
 * - by holder: each grown object under the edge it is first reached by from the GC roots
 *   (breadth-first, weak edges skipped): `Connection.limits -> Object` reads "an Object held in a
 *   Connection's `limits`";
 * - by owner: each grown object attributed to the nearest owner on that same path (Connection,
 *   WebSocket, Socket, ...), i.e. what would go away with the owner.
 *
 *   npm run bench:heap                                  # 1000 and 3000 connections
 *   HEAP_COUNTS=500,2500 HEAP_TOP=60 npm run bench:heap
 *   HEAP_RELAY_DIR=/path/to/other/checkout npm run bench:heap   # another build (its dist/)
 *   HEAP_SNAPSHOT_DIR=/tmp/snaps npm run bench:heap              # keep the .heapsnapshot files
 *   HEAP_FILES=1000:/tmp/snaps/relay-1000.heapsnapshot,3000:/tmp/snaps/relay-3000.heapsnapshot \
 *     node dist-bench/bench/heap-diff.js                # diff kept snapshots again (HEAP_DEPTH=3: longer paths)
 *   HEAP_TARGET=ws npm run bench:heap                 # the peers bench's raw `ws` relay, same probe
 *
 * Self sizes are V8's (pointer compression off on Node: 8-byte fields); they add up to heapUsed's
 * growth minus allocator slack. Figures, not assertions.
 */
import { ChildProcess, fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import WebSocket from 'ws';
import { benchRelayEnv } from './peers/relay-env';

const COUNTS = (process.env.HEAP_COUNTS ?? '1000,3000').split(',').map(Number);
const TOP = Number(process.env.HEAP_TOP ?? 40);
/** Edges of the path shown in the holder table. */
const DEPTH = Number(process.env.HEAP_DEPTH ?? 2);
const HERE = __dirname; // dist-bench/bench
const RELAY_DIR = resolve(process.env.HEAP_RELAY_DIR ?? join(HERE, '../..'));
const HEAP_PROBE = join(HERE, 'peers/heap-probe.js');
const KEEP = process.env.HEAP_SNAPSHOT_DIR;
const TARGET = process.env.HEAP_TARGET ?? 'relay';
const CONNECT_TIMEOUT_MS = 10_000;
/** Wait after the last welcome before the snapshot (the hellos' follow-ups settle). */
const SETTLE_MS = Number(process.env.HEAP_SETTLE_MS ?? 500);

/** Who owns what: the nearest of these on an object's path from the roots. */
const OWNERS = new Set([
  'Connection',
  'WebSocket',
  'RelaySocket',
  'Socket',
  'TCP',
  'Receiver',
  'Sender',
  'IncomingMessage',
  'Map',
  'Set',
  'WeakMap',
  'ConnectionRegistry',
  'MemorySessionDriver',
  'AdmissionService',
  'PresenceHub',
  'TypingService',
]);

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function ask<T>(child: ChildProcess, message: object, ms: number): Promise<T> {
  return new Promise<T>((ok, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`no answer to ${JSON.stringify(message)} in ${ms} ms`)),
      ms,
    );
    child.once('message', (m: { ok?: boolean; error?: string }) => {
      clearTimeout(timer);
      if (m.ok === false) fail(new Error(m.error));
      else ok(m as T);
    });
    child.send(message);
  });
}

/** relay (embedded), or with HEAP_TARGET=ws the peers bench's raw `ws` relay (same frames), for comparison. */
async function startServer(): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const ws = TARGET === 'ws';
  const child = fork(ws ? join(HERE, 'peers/ws-relay.server.js') : join(RELAY_DIR, 'dist/main.js'), [], {
    cwd: RELAY_DIR,
    execArgv: ['--expose-gc', '--require', HEAP_PROBE],
    env: { ...process.env, ...benchRelayEnv(port), ENGINE: 'memory' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  if (ws) {
    await new Promise((r) => child.once('message', r)); // 'ready' once listening
    return { child, port };
  }
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`relay exited (${child.exitCode})`);
    const ok = await fetch(`http://127.0.0.1:${port}/health/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { child, port };
    if (Date.now() > deadline) throw new Error('relay not ready within 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One idle connection: upgrade, hello, welcome; then it only answers pings (ws does that itself). */
function connectIdle(port: number, userId: string): Promise<WebSocket> {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?user_id=${userId}`);
    const timer = setTimeout(
      () => fail(new Error(`${userId}: no welcome in ${CONNECT_TIMEOUT_MS} ms`)),
      CONNECT_TIMEOUT_MS,
    );
    ws.once('error', fail);
    ws.once('open', () => ws.send('{"type":"hello","payload":{}}'));
    ws.on('message', (d) => {
      if ((JSON.parse(d.toString()) as { type: string }).type === 'welcome') {
        clearTimeout(timer);
        ok(ws);
      }
    });
  });
}

interface Snapshot {
  nodes: number[];
  edges: number[];
  strings: string[];
  nodeFields: number;
  edgeFields: number;
  nodeTypes: string[];
  edgeTypes: string[];
}

function load(path: string): Snapshot {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as {
    snapshot: {
      meta: { node_fields: string[]; edge_fields: string[]; node_types: [string[]]; edge_types: [string[]] };
    };
    nodes: number[];
    edges: number[];
    strings: string[];
  };
  const m = raw.snapshot.meta;
  return {
    nodes: raw.nodes,
    edges: raw.edges,
    strings: raw.strings,
    nodeFields: m.node_fields.length,
    edgeFields: m.edge_fields.length,
    nodeTypes: m.node_types[0],
    edgeTypes: m.edge_types[0],
  };
}

interface Tally {
  count: number;
  bytes: number;
}
type Tallies = Map<string, Tally>;

function add(t: Tallies, key: string, bytes: number): void {
  const e = t.get(key);
  if (e) {
    e.count++;
    e.bytes += bytes;
  } else t.set(key, { count: 1, bytes });
}

/** One snapshot summed three ways (see the header). Node fields: type, name, id, self_size, edge_count, ... */
function summarize(s: Snapshot): {
  byKind: Tallies;
  byHolder: Tallies;
  byOwner: Tallies;
  total: number;
  native: number;
} {
  const { nodes, edges, strings, nodeFields: NF, edgeFields: EF } = s;
  const n = nodes.length / NF;
  const kind = (i: number): string => {
    const type = s.nodeTypes[nodes[i * NF]];
    const name = strings[nodes[i * NF + 1]];
    switch (type) {
      case 'object':
        return name;
      case 'closure':
        return `(closure ${name || 'anonymous'})`;
      case 'string':
      case 'concatenated string':
      case 'sliced string':
        return `(${type})`;
      case 'number':
        return '(heap number)';
      case 'code':
        return '(code)';
      default:
        return `(${type} ${name.replace(/\d+/g, '#').slice(0, 60)})`;
    }
  };
  const firstEdge = new Uint32Array(n + 1);
  for (let i = 0, e = 0; i < n; i++) {
    firstEdge[i] = e;
    e += nodes[i * NF + 4];
  }
  firstEdge[n] = edges.length / EF;
  // Breadth-first from the synthetic root (node 0): parent node and the edge's name.
  const parent = new Int32Array(n).fill(-1);
  const via = new Array<string>(n);
  const owner = new Int32Array(n).fill(-1);
  const weak = s.edgeTypes.indexOf('weak');
  const queue = new Int32Array(n);
  let head = 0;
  let tail = 0;
  queue[tail++] = 0;
  parent[0] = 0;
  while (head < tail) {
    const i = queue[head++];
    const ownerHere = OWNERS.has(kind(i)) ? i : owner[i];
    for (let e = firstEdge[i]; e < firstEdge[i + 1]; e++) {
      const type = edges[e * EF];
      if (type === weak) continue;
      const to = edges[e * EF + 2] / NF;
      if (parent[to] !== -1) continue;
      parent[to] = i;
      const edgeType = s.edgeTypes[type];
      const name =
        edgeType === 'element' || edgeType === 'hidden' ? '[]' : String(strings[edges[e * EF + 1]]);
      // Table slots are numbered internal edges; WeakMap entries are named after their key's node id.
      via[to] = /^\d+$/.test(name) ? '[]' : name.includes(' / part of key') ? '[weak entry]' : name;
      owner[to] = ownerHere;
      queue[tail++] = to;
    }
  }
  // A collection is named by where it lives (`ConnectionRegistry.byUser (Map)`), an object by its class.
  const ownerName = (o: number): string => {
    const k = kind(o);
    if (k !== 'Map' && k !== 'Set' && k !== 'WeakMap') return k;
    const p = parent[o];
    const holder = kind(p) === '(array )' || kind(p) === 'Array' ? `${kind(parent[p])}.${via[p]}[]` : kind(p);
    return `${holder}.${via[o]} (${k})`;
  };
  // The last DEPTH edges of the path: `Connection.frameTokens.at -> (heap number)`.
  const path = (i: number): string => {
    let label = via[i];
    let p = parent[i];
    for (let d = 1; d < DEPTH && p > 0 && parent[p] > 0; d++) {
      label = `${via[p]}.${label}`;
      p = parent[p];
    }
    return `${kind(p)}.${label} -> ${kind(i)}`;
  };
  const byKind: Tallies = new Map();
  const byHolder: Tallies = new Map();
  const byOwner: Tallies = new Map();
  const nativeType = s.nodeTypes.indexOf('native');
  let total = 0;
  let native = 0;
  for (let i = 1; i < n; i++) {
    if (parent[i] === -1) continue; // unreachable: garbage the snapshot still lists
    const bytes = nodes[i * NF + 3];
    total += bytes;
    if (nodes[i * NF] === nativeType) native += bytes;
    add(byKind, kind(i), bytes);
    add(byHolder, path(i), bytes);
    add(byOwner, owner[i] >= 0 ? ownerName(owner[i]) : '(no owner)', bytes);
  }
  return { byKind, byHolder, byOwner, total, native };
}

function diff(before: Tallies, after: Tallies, per: number): { key: string; count: number; bytes: number }[] {
  const keys = new Set([...before.keys(), ...after.keys()]);
  return [...keys]
    .map((key) => ({
      key,
      count: ((after.get(key)?.count ?? 0) - (before.get(key)?.count ?? 0)) / per,
      bytes: ((after.get(key)?.bytes ?? 0) - (before.get(key)?.bytes ?? 0)) / per,
    }))
    .sort((a, b) => b.bytes - a.bytes);
}

function table(title: string, rows: { key: string; count: number; bytes: number }[], top: number): void {
  console.log(`\n${title}`);
  console.log(`${'bytes/conn'.padStart(10)}  ${'count/conn'.padStart(10)}  item`);
  for (const r of rows.slice(0, top)) {
    if (Math.abs(r.bytes) < 2) continue;
    console.log(`${r.bytes.toFixed(1).padStart(10)}  ${r.count.toFixed(2).padStart(10)}  ${r.key}`);
  }
}

/** HEAP_FILES=1000:/a.heapsnapshot,3000:/b.heapsnapshot diffs snapshots kept from an earlier run. */
function kept(): { count: number; heap: number; path: string }[] | null {
  const spec = process.env.HEAP_FILES;
  if (!spec) return null;
  return spec.split(',').map((item) => {
    const at = item.indexOf(':');
    return { count: Number(item.slice(0, at)), heap: NaN, path: item.slice(at + 1) };
  });
}

async function snapshots(): Promise<{ count: number; heap: number; path: string }[]> {
  const dir = KEEP ?? mkdtempSync(join(tmpdir(), 'relay-heap-'));
  mkdirSync(dir, { recursive: true });
  const { child, port } = await startServer();
  const sockets: WebSocket[] = [];
  const shots: { count: number; heap: number; path: string }[] = [];
  try {
    for (const count of COUNTS) {
      while (sockets.length < count) {
        const batch = Math.min(50, count - sockets.length);
        const base = sockets.length;
        sockets.push(
          ...(await Promise.all(
            Array.from({ length: batch }, (_, j) => connectIdle(port, `idle-user-${base + j}`)),
          )),
        );
      }
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const path = join(dir, `relay-${count}.heapsnapshot`);
      const answer = await ask<{ heap: number; snapshot: string }>(child, { snapshot: path }, 300_000);
      shots.push({ count, heap: answer.heap, path: answer.snapshot });
      console.log(
        `${count} idle connections: heap used ${(answer.heap / 2 ** 20).toFixed(1)} MiB -> ${answer.snapshot}`,
      );
    }
  } finally {
    for (const ws of sockets) ws.terminate();
    child.kill('SIGTERM');
  }
  return shots;
}

async function main(): Promise<void> {
  const shots = kept() ?? (await snapshots());
  const [a, b] = shots.slice(-2);
  const per = b.count - a.count;
  const sa = summarize(load(a.path));
  const sb = summarize(load(b.path));
  // heapUsed is read before each snapshot; writing the first one frees caches, so this figure reads low.
  const v8 = (sb.total - sb.native - (sa.total - sa.native)) / per;
  console.log(
    `\nper idle connection, between ${a.count} and ${b.count} (${TARGET === 'ws' ? 'raw ws relay' : RELAY_DIR}): ` +
      `V8 heap (reachable, self sizes) ${v8.toFixed(0)} B, native ${((sb.native - sa.native) / per).toFixed(0)} B ` +
      `(heapUsed before the snapshots: ${((b.heap - a.heap) / per).toFixed(0)} B)`,
  );
  table('by owner (nearest owner on the path from the roots)', diff(sa.byOwner, sb.byOwner, per), TOP);
  table('by constructor', diff(sa.byKind, sb.byKind, per), TOP);
  table(
    `by holder (the last ${DEPTH} edges of the path -> object)`,
    diff(sa.byHolder, sb.byHolder, per),
    TOP,
  );
  if (!KEEP && !process.env.HEAP_FILES) rmSync(dirname(a.path), { recursive: true, force: true });
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err.stack ?? err.message);
    process.exit(1);
  },
);
