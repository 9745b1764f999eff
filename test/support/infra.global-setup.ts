import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * Engine and cluster suites need Kafka, Redis and MariaDB (two instances) on loopback. The infra script is idempotent:
 * it starts what is missing and exits non-zero, with the reason, when something cannot be had. That
 * failure fails the run; these suites never skip.
 */
export default function setup(): void {
  const script = join(__dirname, '..', '..', 'scripts', 'infra.sh');
  try {
    execFileSync('bash', [script, 'up'], { stdio: 'inherit', timeout: 10 * 60_000 });
    // The second MariaDB instance of the sharded outbox's tests (its own data directory and port).
    execFileSync('bash', [script, 'mariadb-shards', 'up'], { stdio: 'inherit', timeout: 2 * 60_000 });
  } catch (err) {
    throw new Error(
      `test infrastructure could not be brought up by scripts/infra.sh: ${(err as Error).message}`,
    );
  }
}
