import { INestApplication } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { databaseFor, isolatedEngineEnv, mysqlAdmin } from './backends';
import { AddressInfo } from 'node:net';
import { startApp } from '../../src/bootstrap';
import { AppConfig, loadConfig } from '../../src/config/app-config';

export interface TestApp {
  app: INestApplication;
  config: AppConfig;
  http: string;
  ws: string;
  close(): Promise<void>;
}

/** `RELAY_TEST_ENGINE=production` runs the same suites on Kafka, Redis and MariaDB (jest project e2e-production). */
export const productionEngine = process.env.RELAY_TEST_ENGINE === 'production';

/**
 * Boots the real app on a free loopback port with the given env overrides. On the production engines
 * every app gets its own topic, consumer group, key prefix and database, dropped on close.
 */
export async function startTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  const name = `e2e-${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const database = databaseFor(name);
  const engineEnv = productionEngine ? isolatedEngineEnv(name) : {};
  if (productionEngine) await mysqlAdmin(`CREATE DATABASE \`${database}\``);
  const config = loadConfig({
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'error',
    ...engineEnv,
    ...env,
  });
  const app = await startApp(config);
  const { port } = app.getHttpServer().address() as AddressInfo;
  return {
    app,
    config,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/ws`,
    close: async () => {
      await app.close();
      if (productionEngine) await mysqlAdmin(`DROP DATABASE IF EXISTS \`${database}\``);
    },
  };
}
export async function putConversation(
  http: string,
  id: string,
  members: string[],
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${http}/v1/conversations/${id}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ members }),
  });
  if (res.status !== 200)
    throw new Error(`PUT conversation ${id} answered ${res.status}: ${await res.text()}`);
}
