import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Controller, Get, ServiceUnavailableException } from '@nestjs/common';
import {
  HealthCheck,
  HealthCheckResult,
  HealthCheckService,
  HealthIndicatorResult,
  HealthIndicatorService,
} from '@nestjs/terminus';
import { MessageBus } from '../bus/message-bus';
import { withTimeout } from '../common/deadline';
import { Config } from '../config/config.module';
import { ConversationDirectory } from '../directory/conversation-directory';
import { OutboxStore } from '../outbox/outbox.store';
import { NodeChannel } from '../session/node-channel';
import { SessionMap } from '../session/session-map';
import { NodeStatus } from './node-status';

const CHECK_TIMEOUT_MS = 2_000;

interface Probe {
  key: string;
  result: HealthIndicatorResult;
  /** Down, but not for READY_DEPENDENCY_GRACE_MS yet: reported, not counted. */
  tolerated: boolean;
}

/**
 * Readiness separates this node's own faults from shared dependencies. Draining is ours: 503 at once,
 * so the load balancer stops sending new clients here. A dependency (bus, sessions, channels, outbox,
 * directory) is shared by every node: if a short Redis or MySQL hiccup turned every gateway unready at
 * once, the load balancer would have nowhere to send anyone. So a dependency only makes us unready once
 * it has failed continuously for READY_DEPENDENCY_GRACE_MS; before that we answer 200 and report it
 * down in the body. "Continuously" = every probe since the first failed one failed; a success resets it.
 * A dependency this node has never reached is not a blip: it counts at once (a node starting during an
 * outage does not report ready).
 */
@ApiTags('health')
@Controller('health')
export class HealthController {
  /** Per dependency: when the current run of failed probes started (absent while it answers). */
  private readonly failingSince = new Map<string, number>();
  /** Dependencies that have answered at least once: the grace covers a blip, not a node that never had them. */
  private readonly answered = new Set<string>();

  constructor(
    private readonly config: Config,
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly status: NodeStatus,
    private readonly bus: MessageBus,
    private readonly sessions: SessionMap,
    private readonly channel: NodeChannel,
    private readonly outbox: OutboxStore,
    private readonly directory: ConversationDirectory,
  ) {}

  /** The process is up and its event loop answers. */
  @Get('live')
  @ApiOperation({ summary: 'Liveness: the process is up and its event loop answers' })
  @ApiResponse({ status: 200, description: '{status, node_id, roles}' })
  live() {
    return { status: 'ok', node_id: this.config.nodeId, roles: [...this.config.roles] };
  }

  /** Not draining, and no dependency failing for longer than the grace period. `/health` is the same. */
  @Get(['ready', ''])
  @ApiOperation({
    summary: 'Readiness (`/health` is the same)',
    description:
      'Not draining, and no dependency failing for longer than READY_DEPENDENCY_GRACE_MS; dependencies are listed in the body.',
  })
  @ApiResponse({ status: 200, description: 'ready (a dependency in its grace period is shown down)' })
  @ApiResponse({ status: 503, description: 'draining, or a dependency failing past its grace period' })
  @HealthCheck()
  async ready(): Promise<HealthCheckResult> {
    if (this.status.draining) {
      const node = this.indicators.check('node').down({ message: 'draining' });
      throw new ServiceUnavailableException({ status: 'error', info: {}, error: node, details: node });
    }
    const { engines } = this.config;
    const probes = await Promise.all([
      this.probe('bus', engines.bus, () => this.bus.ping()),
      this.probe('sessions', engines.sessions, () => this.sessions.ping()),
      this.probe('channels', engines.sessions, () => this.channel.ping()),
      this.probe('outbox', engines.outbox, () => this.outbox.ping()),
      this.probe('directory', this.config.directory.kind, () => this.directory.ping()),
    ]);
    const isDown = (p: Probe) => p.result[p.key].status === 'down';
    const tolerated = probes.filter((p) => p.tolerated);
    if (tolerated.length === 0 || probes.some((p) => isDown(p) && !p.tolerated)) {
      // All up (200), or a dependency failing past its grace (503, logged): terminus answers.
      return this.health.check(probes.map((p) => () => p.result));
    }
    const merge = (list: Probe[]) => Object.assign({}, ...list.map((p) => p.result)) as HealthIndicatorResult;
    return {
      status: 'ok',
      info: merge(probes.filter((p) => !isDown(p))),
      error: merge(tolerated),
      details: merge(probes),
    };
  }

  private async probe(key: string, engine: string, ping: () => Promise<void>): Promise<Probe> {
    const indicator = this.indicators.check(key);
    const started = Date.now();
    try {
      await withTimeout(ping(), CHECK_TIMEOUT_MS, `no answer within ${CHECK_TIMEOUT_MS} ms`);
      this.failingSince.delete(key);
      this.answered.add(key);
      return { key, result: indicator.up({ engine, ms: Date.now() - started }), tolerated: false };
    } catch (err) {
      const now = Date.now();
      const since = this.failingSince.get(key) ?? now;
      this.failingSince.set(key, since);
      const graceMs = this.config.health.dependencyGraceMs;
      const failingForMs = now - since;
      const result = indicator.down({
        engine,
        message: (err as Error).message,
        failing_for_ms: failingForMs,
        grace_ms: graceMs,
      });
      return { key, result, tolerated: this.answered.has(key) && failingForMs < graceMs };
    }
  }
}
