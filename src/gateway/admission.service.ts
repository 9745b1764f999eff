import { Injectable } from '@nestjs/common';
import { IncomingMessage } from 'node:http';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { NodeStatus } from '../health/node-status';
import { AuthService, Principal } from './auth.service';

/** What the upgrade gets: either a principal to accept, or a refusal (HTTP status before the upgrade). */
export type AdmissionResult =
  | { ok: true; principal: Principal; ip: string }
  /**
   * `closeWith`: accept the upgrade and close at once with this code and reason instead of answering
   * HTTP `status` (browsers see an HTTP refusal only as close 1006, with no reason).
   */
  | { ok: false; status: number; reason: string; closeWith?: { code: number; reason: string } };

/**
 * Connection admission for the WebSocket upgrade. SKELETON: owned by the admission work (issue 7);
 * the gateway server only calls these methods.
 */
@Injectable()
export class AdmissionService {
  constructor(
    private readonly config: Config,
    private readonly auth: AuthService,
    private readonly status: NodeStatus,
    private readonly metrics: MetricsService,
  ) {}

  /** Decides on one upgrade request (path already checked). */
  async admit(req: IncomingMessage): Promise<AdmissionResult> {
    if (this.status.draining) return { ok: false, status: 503, reason: 'draining' };
    const principal = await this.auth.authenticate(req);
    if (!principal) return { ok: false, status: 401, reason: 'unauthorized' };
    return { ok: true, principal, ip: req.socket.remoteAddress ?? '' };
  }

  /** The upgraded connection now counts against the caps (paired with `released`). */
  admitted(_userId: string, _ip: string): void {}

  /** Its socket closed. */
  released(_userId: string, _ip: string): void {}

  /** hello received, or the connection closed before it: it no longer counts as pending. */
  handshakeEnded(): void {}

  /** The hello timeout for a connection upgraded now; shrinks as pending handshakes pile up. */
  handshakeTimeoutMs(): number {
    return this.config.gateway.handshakeTimeoutMs;
  }
}
