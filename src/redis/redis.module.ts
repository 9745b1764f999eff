import { DynamicModule, Global, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import Redis, { ChainableCommander } from 'ioredis';
import { Config } from '../config/config.module';

/** How long a graceful QUIT may take at shutdown before the socket is simply dropped. */
const QUIT_TIMEOUT_MS = 2_000;

/**
 * The node's Redis connections: one shared command connection (auto-pipelined) and subscriber
 * connections created on demand (a subscribed connection cannot run other commands).
 */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  private readonly logger = new Logger(RedisConnections.name);
  readonly command: Redis;
  private readonly extra = new Set<Redis>();

  constructor(private readonly config: Config) {
    this.command = this.create('cmd');
  }

  create(name: string): Redis {
    const connectionName = `relay:${this.config.nodeId}:${name}`;
    const client = new Redis(this.config.redis.url, {
      connectionName,
      enableAutoPipelining: true,
      maxRetriesPerRequest: 2,
      lazyConnect: false,
    });
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
    if (name !== 'cmd') {
      this.extra.add(client);
      client.once('end', () => this.extra.delete(client));
    }
    return client;
  }

  get prefix(): string {
    return this.config.redis.keyPrefix;
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.allSettled([this.command, ...this.extra].map((c) => closeRedis(c)));
  }
}

/** QUIT (replies to pending commands first), falling back to dropping the socket if Redis is unreachable. */
export async function closeRedis(client: Redis): Promise<void> {
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
