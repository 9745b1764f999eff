import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * The scale suites need, besides the usual loopback backends, the 3-broker Kafka cluster, the
 * Redis Cluster and the second MariaDB instance (outbox shard) of scripts/infra.sh (all idempotent:
 * they start what is missing, e.g. a broker a previous run killed). A failure fails the run with the script's reason; nothing is skipped.
 */
export default function setup(): void {
  const script = join(__dirname, '..', '..', 'scripts', 'infra.sh');
  for (const args of [['up'], ['kafka-cluster', 'up'], ['redis-cluster', 'up'], ['mariadb-shards', 'up']]) {
    try {
      execFileSync('bash', [script, ...args], { stdio: 'inherit', timeout: 10 * 60_000 });
    } catch (err) {
      throw new Error(`scripts/infra.sh ${args.join(' ')} failed: ${(err as Error).message}`);
    }
  }
}
