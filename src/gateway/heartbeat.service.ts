import { Injectable, Logger } from '@nestjs/common';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { SessionMap } from '../session/session-map';
import { Connection } from './connection';
import { ConnectionRegistry } from './connection.registry';
import { Containment } from './containment';

/**
 * Every `HEARTBEAT_MS`: ping every connection that said hello, terminate those that left two pings
 * unanswered, and refresh the session TTLs of the others and this node's registry entry in one batch.
 * Token expiry is each connection's own timer (Connection), not this sweep's job. The gateway starts
 * it once the node channel is subscribed and stops it when it drains.
 */
@Injectable()
export class HeartbeatService {
  private readonly logger = new Logger(HeartbeatService.name);
  private readonly boundary: Containment;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: Config,
    private readonly sessions: SessionMap,
    private readonly registry: ConnectionRegistry,
    metrics: MetricsService,
  ) {
    this.boundary = new Containment(metrics, this.logger);
  }

  start(): void {
    this.timer = setInterval(
      () => void this.sweep().catch((err: unknown) => this.boundary.contain('heartbeat', err)),
      this.config.gateway.heartbeatMs,
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async sweep(): Promise<void> {
    const alive: Connection[] = [];
    for (const conn of this.registry.all) {
      try {
        if (conn.heartbeat()) alive.push(conn);
      } catch (err) {
        this.boundary.contain('heartbeat', err, conn);
      }
    }
    // Built synchronously from connections still open, so a socket closing meanwhile is not written back.
    const { nodeId } = this.config;
    const entries = alive
      .filter((c) => c.state !== 'closed')
      .map((c) => ({
        userId: c.userId,
        entry: { connId: c.id, node: nodeId, connectedAt: c.connectedAt, lastPing: c.lastPing },
      }));
    const results = await Promise.allSettled([
      this.sessions.registerNode(nodeId),
      entries.length > 0 ? this.sessions.touch(entries) : Promise.resolve(),
    ]);
    for (const r of results) {
      if (r.status === 'rejected')
        this.logger.warn(`session heartbeat failed: ${(r.reason as Error).message}`);
    }
  }
}
