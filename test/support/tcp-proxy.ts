import { createServer, Server, Socket, connect } from 'node:net';

/**
 * A loopback TCP proxy that a test can cut: every open client<->server pair is destroyed at once,
 * as a dropped network path would, while new connections keep working (unless paused).
 */
export class TcpProxy {
  private server!: Server;
  private readonly pairs = new Set<[Socket, Socket]>();
  private refusing = false;
  port = 0;
  accepted = 0;

  constructor(private readonly targetPort: number) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      if (this.refusing) return void client.destroy();
      this.accepted++;
      const upstream = connect(this.targetPort, '127.0.0.1');
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** Destroys every open connection; returns how many were cut. */
  cut(): number {
    const n = this.pairs.size;
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    return n;
  }

  refuse(on: boolean): void {
    this.refusing = on;
  }

  get open(): number {
    return this.pairs.size;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
