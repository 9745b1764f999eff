import { ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { waitFor } from './wait-for';
import { isolatedEngineEnv } from './backends';

/** A relay process started from the build (`dist/main.js`), as in production. */
export interface NodeProcess {
  name: string;
  port: number;
  http: string;
  ws: string;
  proc: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export async function startNode(
  name: string,
  env: Record<string, string>,
  readyTimeoutMs = 60_000,
): Promise<NodeProcess> {
  const port = await freePort();
  const main = join(__dirname, '..', '..', 'dist', 'main.js');
  const proc = spawn(process.execPath, [main], {
    env: { ...process.env, ...env, NODE_ID: name, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 200) output.shift();
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const node: NodeProcess = {
    name,
    port,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/ws`,
    proc,
    output,
    exited,
  };
  try {
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`exited with ${proc.exitCode}`);
        const res = await fetch(`${node.http}/health/ready`);
        return res.status === 200;
      },
      readyTimeoutMs,
      `${name} to be ready`,
      100,
    );
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n--- ${name} output ---\n${output.join('')}`);
  }
  return node;
}

export async function stopNode(node: NodeProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (node.proc.exitCode !== null || node.proc.signalCode !== null) return;
  node.proc.kill(signal);
  await Promise.race([node.exited, new Promise((r) => setTimeout(r, 20_000).unref())]);
  if (node.proc.exitCode === null && node.proc.signalCode === null) node.proc.kill('SIGKILL');
}

/**
 * The settings every process of one cluster suite shares (isolated topic, key prefix and database under
 * `name`; quick heartbeats; send budgets out of the way), and the two roles' variants.
 */
export function clusterRoleEnvs(name: string): {
  env: Record<string, string>;
  gatewayEnv: Record<string, string>;
  routerEnv: Record<string, string>;
} {
  const env = {
    ...isolatedEngineEnv(name),
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    // A pong must come back within two beats: 3 s, so a test process descheduled on a loaded 2-core box keeps its sockets.
    HEARTBEAT_MS: '1500',
    SEND_RATE_PER_SEC: '10000',
    SEND_BURST: '10000',
  };
  return { env, gatewayEnv: { ...env, APP_ROLES: 'gateway' }, routerEnv: { ...env, APP_ROLES: 'router' } };
}
