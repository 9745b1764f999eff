import { Global, Injectable, Module } from '@nestjs/common';

/**
 * This node's own state, as opposed to the health of shared dependencies: readiness turns red at
 * once on these (see HealthController), the gateway refuses upgrades while draining.
 */
@Injectable()
export class NodeStatus {
  private drainingSince: number | null = null;

  /** SIGTERM: from now on the node takes no new connections and reports not ready. */
  startDraining(): void {
    this.drainingSince ??= Date.now();
  }

  get draining(): boolean {
    return this.drainingSince !== null;
  }
}

@Global()
@Module({ providers: [NodeStatus], exports: [NodeStatus] })
export class NodeStatusModule {}
