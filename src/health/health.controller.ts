import { Controller, Get } from '@nestjs/common';
import {
  HealthCheck,
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

const CHECK_TIMEOUT_MS = 2_000;

@Controller('health')
export class HealthController {
  constructor(
    private readonly config: Config,
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly bus: MessageBus,
    private readonly sessions: SessionMap,
    private readonly channel: NodeChannel,
    private readonly outbox: OutboxStore,
    private readonly directory: ConversationDirectory,
  ) {}

  /** The process is up and its event loop answers. */
  @Get('live')
  live() {
    return { status: 'ok', node_id: this.config.nodeId, roles: [...this.config.roles] };
  }

  /** Every dependency of the enabled roles answers within the timeout. */
  @Get('ready')
  @HealthCheck()
  ready() {
    const { engines } = this.config;
    return this.health.check([
      () => this.probe('bus', engines.bus, () => this.bus.ping()),
      () => this.probe('sessions', engines.sessions, () => this.sessions.ping()),
      () => this.probe('channels', engines.sessions, () => this.channel.ping()),
      () => this.probe('outbox', engines.outbox, () => this.outbox.ping()),
      () => this.probe('directory', this.config.directory.kind, () => this.directory.ping()),
    ]);
  }

  private async probe(
    key: string,
    engine: string,
    ping: () => Promise<void>,
  ): Promise<HealthIndicatorResult> {
    const indicator = this.indicators.check(key);
    const started = Date.now();
    try {
      await withTimeout(ping(), CHECK_TIMEOUT_MS, `no answer within ${CHECK_TIMEOUT_MS} ms`);
      return indicator.up({ engine, ms: Date.now() - started });
    } catch (err) {
      return indicator.down({ engine, message: (err as Error).message });
    }
  }
}
