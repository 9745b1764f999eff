import type Redis from 'ioredis';
import { Connection, createConnection } from 'mysql2/promise';

/** A server-level MariaDB connection; fails (never skips) with the reason when MariaDB is down. */
export async function mysqlConnection(url = 'mysql://root@127.0.0.1:3306'): Promise<Connection> {
  const u = new URL(url);
  try {
    return await createConnection({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
    });
  } catch (err) {
    throw new Error(
      `MariaDB is not reachable at ${u.hostname}:${u.port || 3306} (scripts/infra.sh up starts it): ${(err as Error).message}`,
    );
  }
}

/** Runs one statement as MariaDB root. */
export async function mysqlAdmin(sql: string, url = 'mysql://root@127.0.0.1:3306'): Promise<void> {
  const conn = await mysqlConnection(url);
  try {
    await conn.query(sql);
  } finally {
    await conn.end();
  }
}

/** Creates the database named by a mysql:// URL if it is missing. */
export function ensureDatabase(url: string): Promise<void> {
  return mysqlAdmin(
    `CREATE DATABASE IF NOT EXISTS \`${new URL(url).pathname.slice(1)}\` CHARACTER SET utf8mb4`,
    url,
  );
}

/** Deletes every key under a test's prefix. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    // One DEL per key: on a cluster node the keys of one SCAN page sit on different slots.
    if (keys.length > 0) await Promise.all(keys.map((k) => redis.del(k)));
    cursor = next;
  } while (cursor !== '0');
}

/**
 * Production-engine settings private to one test run: its own topic, consumer group, key prefix and
 * database (`relay_<name>`, which the caller creates and drops).
 */
export function isolatedEngineEnv(name: string): Record<string, string> {
  return {
    ENGINE: 'production',
    KAFKA_TOPIC: `relay-${name}`,
    KAFKA_GROUP_ID: `relay-${name}`,
    KAFKA_PARTITIONS: '4',
    REDIS_KEY_PREFIX: `relay-${name}:`,
    MYSQL_URL: `mysql://root@127.0.0.1:3306/${databaseFor(name)}`,
  };
}

export function databaseFor(name: string): string {
  return `relay_${name.replace(/-/g, '_')}`;
}
