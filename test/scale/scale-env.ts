import { join } from 'node:path';
import { homedir } from 'node:os';

/** Where scripts/infra.sh keeps the clusters (same defaults as the script). */
export const INFRA_DIR = process.env.RELAY_INFRA_DIR ?? join(homedir(), '.cache', 'relay-infra');
export const KAFKA_CLUSTER_PORTS = (process.env.KAFKA_CLUSTER_PORTS ?? '29092,29094,29096').split(',');
export const KAFKA_CLUSTER_BROKERS = KAFKA_CLUSTER_PORTS.map((p) => `127.0.0.1:${p}`);
export const REDIS_CLUSTER_PORTS = (
  process.env.REDIS_CLUSTER_PORTS ?? '27001,27002,27003,27004,27005,27006'
).split(',');
export const REDIS_CLUSTER_NODES = REDIS_CLUSTER_PORTS.map((p) => `127.0.0.1:${p}`);
export const INFRA_SCRIPT = join(__dirname, '..', '..', 'scripts', 'infra.sh');
/** The second MariaDB instance (`scripts/infra.sh mariadb-shards`): outbox shard 1 of the scale suite. */
export const OUTBOX_SHARD_PORT = Number((process.env.MARIADB_SHARD_PORTS ?? '3307').split(',')[0]);
