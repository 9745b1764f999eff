import { createServer, IncomingMessage, request, Server, ServerResponse } from 'node:http';
import { connect, Socket } from 'node:net';
import { Duplex } from 'node:stream';

/**
 * A loopback HTTP proxy like a corporate one: it forwards plain HTTP requests, and answers WebSocket
 * upgrades with an HTTP error (`refuseUpgrades(400 | 502)`) until told to let them through. Counts
 * what it saw, so tests can tell which transport a client used.
 */
export class HttpProxy {
  private server!: Server;
  private readonly tunnels = new Set<Duplex>();
  private refuseStatus: number | null = null;
  port = 0;
  upgradesRefused = 0;
  upgradesPassed = 0;
  httpRequests = 0;

  constructor(private readonly targetPort: number) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.forward(req, res));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.upgrade(req, socket, head),
    );
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** null lets upgrades through; a status refuses them with it. */
  refuseUpgrades(status: number | null): void {
    this.refuseStatus = status;
  }

  /** Cuts every tunnelled WebSocket (as a proxy restart would). */
  cutTunnels(): void {
    for (const t of this.tunnels) t.destroy();
    this.tunnels.clear();
  }

  async stop(): Promise<void> {
    this.cutTunnels();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private forward(req: IncomingMessage, res: ServerResponse): void {
    this.httpRequests++;
    const upstream = request(
      { host: '127.0.0.1', port: this.targetPort, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    if (this.refuseStatus !== null) {
      this.upgradesRefused++;
      const status = this.refuseStatus;
      socket.end(
        `HTTP/1.1 ${status} ${status === 400 ? 'Bad Request' : 'Bad Gateway'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      );
      return;
    }
    this.upgradesPassed++;
    const upstream: Socket = connect(this.targetPort, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    this.tunnels.add(socket);
    const drop = () => {
      socket.destroy();
      upstream.destroy();
      this.tunnels.delete(socket);
    };
    upstream.on('error', drop).on('close', drop);
    socket.on('close', drop);
  }
}
