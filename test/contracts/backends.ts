import { Cluster } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { Config } from '../../src/config/config.module';
import { createDataSource } from '../../src/database/data-source';
import { runMigrationsLocked } from '../../src/database/migrate';
import { RedisConnections } from '../../src/redis/redis.module';
import { databaseFor, deleteKeys, ensureDatabase, mysqlAdmin } from '../support/backends';

/** Production backends for the contract runners: each run gets a database or key prefix of its own. */

const MYSQL_SERVER = process.env.RELAY_TEST_MYSQL_SERVER ?? 'mysql://root@127.0.0.1:3306';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Set by the scale project (test/scale): the same Redis contracts on a Redis Cluster. */
const REDIS_CLUSTER_NODES = process.env.RELAY_TEST_REDIS_CLUSTER_NODES;

export interface ContractDatabase {
  /** A new connection pool on the run's database (another process, when called again). */
  open(poolSize?: number): Promise<DataSource>;
  /** Closes every pool and drops the database. */
  dispose(): Promise<void>;
}

/** The second MariaDB instance (`scripts/infra.sh mariadb-shards up`), for the sharded outbox. */
export const MYSQL_SHARD_SERVER = process.env.RELAY_TEST_MYSQL_SHARD_SERVER ?? 'mysql://root@127.0.0.1:3307';

/** A freshly migrated MariaDB database `relay_<name>_<random>` on `server`, dropped by dispose(). */
export async function contractDatabase(name: string, server = MYSQL_SERVER): Promise<ContractDatabase> {
  const database = databaseFor(`${name}-${randomUUID().slice(0, 8)}`);
  const url = `${server}/${database}`;
  await ensureDatabase(url);
  const pools: DataSource[] = [];
  const open = async (poolSize = 4): Promise<DataSource> => {
    const ds = createDataSource(url, { poolSize });
    await ds.initialize();
    pools.push(ds);
    return ds;
  };
  await runMigrationsLocked(await open());
  return {
    open,
    dispose: async () => {
      await Promise.allSettled(pools.map((ds) => ds.destroy()));
      await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``, server);
    },
  };
}

export interface ContractRedis {
  /** The Redis connections of one more node (its own node id), under the run's key prefix. */
  node(): RedisConnections;
  /** Deletes the run's keys and closes every connection. */
  dispose(): Promise<void>;
}

/** Redis under a key prefix of its own (`relay-contract:<name>:<random>:`). */
export function contractRedis(name: string): ContractRedis {
  const prefix = `relay-contract:${name}:${randomUUID()}:`;
  const nodes: RedisConnections[] = [];
  return {
    node: () => {
      const config = {
        nodeId: `contract-${randomUUID().slice(0, 8)}`,
        redis: {
          url: REDIS_URL,
          keyPrefix: prefix,
          clusterNodes: REDIS_CLUSTER_NODES ? REDIS_CLUSTER_NODES.split(',') : null,
        },
      };
      const connections = new RedisConnections(config as unknown as Config);
      nodes.push(connections);
      return connections;
    },
    dispose: async () => {
      if (nodes.length > 0) {
        const cmd = nodes[0].command;
        // On a cluster every master holds some of the keys.
        const servers = cmd instanceof Cluster ? cmd.nodes('master') : [cmd];
        await Promise.all(servers.map((r) => deleteKeys(r, prefix)));
      }
      await Promise.allSettled(nodes.map((c) => c.onApplicationShutdown()));
    },
  };
}
