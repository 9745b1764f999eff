import { Logger } from '@nestjs/common';
import { startApp } from './bootstrap';
import { loadConfig } from './config/app-config';
import { loadDotEnv } from './config/dotenv';
import { ConfigError } from './config/env.validation';

async function main(): Promise<void> {
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
  const logger = new Logger('Main');
  const addr = app.getHttpServer().address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const roles = [...config.roles].join(',');
  logger.log(
    `relay node ${config.nodeId} up: roles=${roles} engines=${JSON.stringify(config.engines)} port=${port}`,
  );
  if (config.roles.has('gateway')) {
    const auth = config.auth.mode === 'dev' ? '?user_id=alice' : '?token=<JWT>';
    logger.log(`connect: ws://127.0.0.1:${port}/ws${auth}  then send {"type":"hello","payload":{}}`);
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
