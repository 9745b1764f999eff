import { DynamicModule, Global, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import Redis, { ChainableCommander, Cluster } from 'ioredis';
import { Config } from '../config/config.module';
import { keySlot } from './key-slot';

/** How long a graceful QUIT may take at shutdown before the socket is simply dropped. */
const QUIT_TIMEOUT_MS = 2_000;

/** A single Redis or a Redis Cluster: the drivers use the commands both have. */
export type RedisClient = Redis | Cluster;

/**
 * The node's Redis connections: one shared command connection (auto-pipelined) and subscriber
 * connections created on demand (a subscribed connection cannot run other commands).
 *
 * With REDIS_CLUSTER_NODES the command connection is an ioredis Cluster (it follows MOVED/ASK and
 * failovers by itself; auto-pipelining batches per master). Keys are hash-tagged by the drivers so
 * whatever one command, MULTI or script touches is on one slot; `groupBySlot` splits batches.
 */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  private readonly logger = new Logger(RedisConnections.name);
  readonly command: RedisClient;
  private readonly extra = new Set<RedisClient>();
  readonly isCluster: boolean;

  constructor(private readonly config: Config) {
    this.isCluster = (config.redis.clusterNodes?.length ?? 0) > 0;
    this.command = this.create('cmd');
  }

  create(name: string): RedisClient {
    const connectionName = `relay:${this.config.nodeId}:${name}`;
    const seeds = this.config.redis.clusterNodes;
    const client: RedisClient =
      seeds && seeds.length > 0
        ? new Cluster(
            seeds.map((s) => {
              const at = s.lastIndexOf(':');
              return { host: s.slice(0, at), port: Number(s.slice(at + 1)) };
            }),
            {
              enableAutoPipelining: true,
              scaleReads: 'master',
              // A failover takes the cluster-node-timeout plus an election: keep retrying through it.
              retryDelayOnFailover: 200,
              retryDelayOnClusterDown: 200,
              retryDelayOnTryAgain: 200,
              maxRedirections: 32,
              redisOptions: { connectionName, maxRetriesPerRequest: 2 },
            },
          )
        : new Redis(this.config.redis.url, {
            connectionName,
            enableAutoPipelining: true,
            maxRetriesPerRequest: 2,
            lazyConnect: false,
          });
    this.watch(client, connectionName);
    if (name !== 'cmd') {
      this.extra.add(client);
      client.once('end', () => this.extra.delete(client));
    }
    return client;
  }

  /**
   * A plain connection to one node of the cluster (`host:port`), for sharded pub/sub: SSUBSCRIBE
   * must be sent to the master that owns the channel's slot. No reconnects: the caller re-resolves
   * the owner (it may have changed) and opens a new one.
   */
  createNodeConnection(name: string, nodeKey: string): Redis {
    const connectionName = `relay:${this.config.nodeId}:${name}`;
    const at = nodeKey.lastIndexOf(':');
    const client = new Redis({
      host: nodeKey.slice(0, at),
      port: Number(nodeKey.slice(at + 1)),
      connectionName,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
      connectTimeout: 2_000,
    });
    this.watch(client, connectionName);
    this.extra.add(client);
    client.once('end', () => this.extra.delete(client));
    return client;
  }

  /** The master (`host:port`) that serves a key's or channel's slot now, refreshing the map first. */
  async masterOf(key: string): Promise<string> {
    const cluster = this.command;
    if (!(cluster instanceof Cluster)) throw new Error('masterOf needs a Redis Cluster');
    await new Promise<void>((resolve) => cluster.refreshSlotsCache(() => resolve()));
    const owner = cluster.slots[keySlot(key)]?.[0];
    if (!owner) throw new Error(`no master serves slot ${keySlot(key)} of ${key}`);
    return owner;
  }

  private watch(client: RedisClient, connectionName: string): void {
    // Errors surface through the failing commands; the 'error' event needs a listener (or it would
    // crash the process) and is logged once per outage, not once per reconnect attempt.
    let failing = false;
    client.on('error', (err: Error) => {
      if (failing) return;
      failing = true;
      this.logger.warn(`redis connection ${connectionName} failed: ${err.message}; reconnecting`);
    });
    client.on('ready', () => {
      if (!failing) return;
      failing = false;
      this.logger.log(`redis connection ${connectionName} is back`);
    });
  }

  get prefix(): string {
    return this.config.redis.keyPrefix;
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.allSettled([this.command, ...this.extra].map((c) => closeRedis(c)));
  }
}

/** QUIT (replies to pending commands first), falling back to dropping the socket if Redis is unreachable. */
export async function closeRedis(client: RedisClient): Promise<void> {
  if (client.status === 'end') return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.quit(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, QUIT_TIMEOUT_MS);
      }),
    ]);
  } catch {
    // fall through to disconnect
  } finally {
    clearTimeout(timer);
    // QUIT timed out or failed (Redis unreachable, commands queued offline): drop the socket and retries.
    if ((client.status as string) !== 'end') client.disconnect();
  }
}

/**
 * Splits a batch (by index) into groups that one pipeline or MULTI may carry: on a single Redis,
 * chunks of `chunk` items; on a cluster, items whose keys share a slot (then chunked), since a
 * cluster pipeline must stay on one master and a MULTI on one slot.
 */
export function groupBySlot(isCluster: boolean, keys: readonly string[], chunk: number): number[][] {
  const groups: number[][] = [];
  if (!isCluster) {
    for (let i = 0; i < keys.length; i += chunk) {
      groups.push(Array.from({ length: Math.min(chunk, keys.length - i) }, (_, k) => i + k));
    }
    return groups;
  }
  const bySlot = new Map<number, number[]>();
  keys.forEach((key, i) => {
    const slot = keySlot(key);
    let group = bySlot.get(slot);
    if (!group || group.length >= chunk) {
      if (group) groups.push(group);
      bySlot.set(slot, (group = []));
    }
    group.push(i);
  });
  groups.push(...bySlot.values());
  return groups;
}

/**
 * Runs one pipeline (or MULTI) per group of `groupBySlot`, all at once, and returns the replies in
 * the items' order. `add` must queue exactly `perItem` commands per item, all on `keyOf(item)`'s slot.
 */
export async function execGrouped<T>(
  connections: RedisConnections,
  items: readonly T[],
  keyOf: (item: T) => string,
  chunk: number,
  perItem: number,
  add: (p: ChainableCommander, item: T) => unknown,
  multi = false,
): Promise<unknown[]> {
  if (items.length === 0) return [];
  const groups = groupBySlot(connections.isCluster, items.map(keyOf), chunk);
  const out: unknown[] = new Array<unknown>(items.length * perItem);
  await Promise.all(
    groups.map(async (group) => {
      const p = multi ? connections.command.multi() : connections.command.pipeline();
      for (const i of group) add(p, items[i]);
      const replies = await execChecked(p);
      group.forEach((i, j) => {
        for (let k = 0; k < perItem; k++) out[i * perItem + k] = replies[j * perItem + k];
      });
    }),
  );
  return out;
}

/**
 * Runs a pipeline or MULTI and returns the replies, throwing on the first failed command (ioredis
 * reports per-command failures as `[err, result]` pairs instead of rejecting) or an aborted EXEC.
 */
export async function execChecked(pipeline: ChainableCommander): Promise<unknown[]> {
  const replies = await pipeline.exec();
  if (!replies) throw new Error('redis transaction aborted');
  return replies.map(([err, result]) => {
    if (err) throw err;
    return result;
  });
}

/** The engine factories inject RedisConnections optionally: it exists only when AppModule imported RedisModule. */
export function requireRedis(
  connections: RedisConnections | undefined | null,
  what: string,
): RedisConnections {
  if (!connections) {
    throw new Error(
      `${what} needs the Redis connections, but RedisModule is not loaded (AppModule imports it only when SESSIONS=redis)`,
    );
  }
  return connections;
}

@Global()
@Module({})
export class RedisModule {
  static forRoot(): DynamicModule {
    return { module: RedisModule, providers: [RedisConnections], exports: [RedisConnections] };
  }
}
