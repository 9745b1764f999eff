import { INestApplication } from '@nestjs/common';
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

/** Boots the real app on a free loopback port with the given env overrides. */
export async function startTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  const config = loadConfig({ NODE_ENV: 'test', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'error', ...env });
  const app = await startApp(config);
  const { port } = app.getHttpServer().address() as AddressInfo;
  return {
    app,
    config,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/ws`,
    close: () => app.close(),
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
