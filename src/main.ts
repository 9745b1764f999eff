// First, before anything else loads: see the file.
import './compile-cache';
import { Logger } from '@nestjs/common';
import { startApp } from './bootstrap';
import { loadConfig } from './config/app-config';
import { loadDotEnv } from './config/dotenv';
import { ConfigError } from './config/env.validation';
import { MetricsService } from './metrics/metrics.service';

let metrics: MetricsService | undefined;

/**
 * Last resort. The real fix for an unexpected exception is the containment boundary around each
 * socket, timer and batch handler; one that still escapes is logged and counted, and the node keeps
 * serving its other connections rather than exiting and dropping all of them.
 */
function installLastResortHandlers(): void {
  const logger = new Logger('Process');
  const report = (kind: string, err: unknown) => {
    metrics?.contained.labels('process').inc();
    const what = err instanceof Error ? (err.stack ?? err.message) : String(err);
    logger.error(`${kind} (not exiting): ${what}`);
  };
  process.on('uncaughtException', (err) => report('uncaught exception', err));
  process.on('unhandledRejection', (reason) => report('unhandled rejection', reason));
}

async function main(): Promise<void> {
  installLastResortHandlers();
  let config;
  try {
    loadDotEnv();
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const app = await startApp(config);
  metrics = app.get(MetricsService);
  const logger = new Logger('Main');
  const addr = app.getHttpServer().address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const roles = [...config.roles].join(',');
  logger.log(
    `relay node ${config.nodeId} up: roles=${roles} engines=${JSON.stringify(config.engines)} port=${port}`,
  );
  if (config.roles.has('gateway')) {
    const auth = config.auth.mode === 'dev' ? '?user_id=alice' : '?token=<JWT>';
    const token = config.auth.mode === 'dev' ? '' : ' (npm run -s token -- alice)';
    logger.log(`connect: ws://127.0.0.1:${port}/ws${auth}${token}, or try: npm run chat -- alice`);
  }
  // A drain that hangs must not keep a terminated pod around forever.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => setTimeout(() => process.exit(1), config.shutdownTimeoutMs).unref());
  }
}

main().catch((err: Error) => {
  console.error(`fatal: ${err.message}`);
  process.exit(1);
});
