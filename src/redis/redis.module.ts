import { DynamicModule, Global, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import { Config } from '../config/config.module';

/**
 * The node's Redis connections: one shared command connection (auto-pipelined) and subscriber
 * connections created on demand (a subscribed connection cannot run other commands).
 */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  readonly command: Redis;
  private readonly extra: Redis[] = [];

  constructor(private readonly config: Config) {
    this.command = this.create('cmd');
  }

  create(name: string): Redis {
    const client = new Redis(this.config.redis.url, {
      connectionName: `relay:${this.config.nodeId}:${name}`,
      enableAutoPipelining: true,
      maxRetriesPerRequest: 2,
      lazyConnect: false,
    });
    // Errors surface through the failing commands; the 'error' event only needs a listener.
    client.on('error', () => undefined);
    if (name !== 'cmd') this.extra.push(client);
    return client;
  }

  get prefix(): string {
    return this.config.redis.keyPrefix;
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.allSettled([this.command, ...this.extra].map((c) => c.quit()));
  }
}

@Global()
@Module({})
export class RedisModule {
  static forRoot(): DynamicModule {
    return { module: RedisModule, providers: [RedisConnections], exports: [RedisConnections] };
  }
}
