/**
 * The SDK as people install it (issue 14: "the SDK tarball installs into an empty folder outside the
 * repo and chats with a running relay"): `npm pack` the workspace, `npm install` the tarball into a
 * fresh folder under os.tmpdir(), and run a plain .mjs there that imports `@relay/client` by name.
 * Two clients in that process (Node's global WebSocket: the package brings no dependency) exchange
 * a message through a relay started here. The single-file bundle and the minified browser build
 * are imported too.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { putConversation, startTestApp, TestApp } from '../support/test-app';

const run = promisify(execFile);
const repoRoot = path.resolve(__dirname, '../..');
/** pack (which builds: tsc + esbuild) and install are slow-ish; each step is bounded on its own. */
const STEP_MS = 120_000;

/** A child environment without the npm_* variables of an enclosing `npm test` (they would steer the inner npm). */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(key)) env[key] = value;
  }
  // The npm that belongs to the node running the tests.
  env.PATH = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`;
  return env;
}

const consumerScript = `
import { connect, RelayError } from '@relay/client';
import * as bundle from '@relay/client/bundle';
import * as browser from '@relay/client/browser';

const [url, conversation] = process.argv.slice(2);
const deadline = setTimeout(() => { console.error('consumer: timed out'); process.exit(2); }, 20_000);
const alice = connect({ url, userId: 'alice' });
const bob = connect({ url, userId: 'bob' });
const received = new Promise((resolve) => bob.on('message', resolve));
await Promise.all([alice.whenOpen(), bob.whenOpen()]);
const ack = await alice.send(conversation, { text: 'hello from the tarball' });
const message = await received;
await Promise.all([alice.close(), bob.close()]);
clearTimeout(deadline);
console.log(JSON.stringify({
  ack,
  message,
  relayError: typeof RelayError,
  bundle: { connect: typeof bundle.connect, exports: Object.keys(bundle).sort() },
  browser: { connect: typeof browser.connect },
}));
`;

const typesCheck = `
import { connect, RelayError } from '@relay/client';
import type { Message, RelayClient } from '@relay/client';
import { connect as bundled } from '@relay/client/bundle';

const client: RelayClient = connect({ url: 'ws://127.0.0.1/ws', userId: 'a', backoffCapMs: 5000 });
client.on('message', (m: Message) => void m.conversationId.length);
client.reconnectNow();
const pending: number = client.pendingSends;
// @ts-expect-error: not an option
connect({ url: 'ws://127.0.0.1/ws', userId: 'a', nope: 1 });
export { bundled, pending, RelayError };
`;

describe('the SDK package, installed from its tarball outside the repository', () => {
  let t: TestApp;
  const cleanup: string[] = [];

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all(cleanup.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it(
    'npm pack -> npm install in an empty folder -> two clients chat through a running relay',
    async () => {
      const env = childEnv();
      const packDir = await mkdtemp(path.join(tmpdir(), 'relay-sdk-pack-'));
      const appDir = await mkdtemp(path.join(tmpdir(), 'relay-sdk-app-'));
      cleanup.push(packDir, appDir);
      expect(path.relative(repoRoot, appDir).startsWith('..')).toBe(true);

      await run('npm', ['pack', '--workspace', 'packages/client', '--pack-destination', packDir], {
        cwd: repoRoot,
        env,
        timeout: STEP_MS,
      });
      const { version } = JSON.parse(
        await readFile(path.join(repoRoot, 'packages/client/package.json'), 'utf8'),
      ) as {
        version: string;
      };
      expect(await readdir(packDir)).toEqual([`relay-client-${version}.tgz`]);
      const tarball = path.join(packDir, `relay-client-${version}.tgz`);

      await writeFile(
        path.join(appDir, 'package.json'),
        JSON.stringify({ name: 'sdk-consumer', private: true, type: 'module' }),
      );
      // No dependencies to fetch, so this works offline.
      await run('npm', ['install', tarball, '--no-audit', '--no-fund', '--offline'], {
        cwd: appDir,
        env,
        timeout: STEP_MS,
      });
      const installed = path.join(appDir, 'node_modules/@relay/client');
      const files = await readdir(path.join(installed, 'dist'));
      expect(files).toEqual(
        expect.arrayContaining(['index.js', 'index.d.ts', 'relay-client.bundle.js', 'relay-client.min.js']),
      );
      // Nothing else came along: the SDK has no runtime dependencies.
      const modules = (await readdir(path.join(appDir, 'node_modules'))).filter(
        (name) => !name.startsWith('.'),
      );
      expect(modules).toEqual(['@relay']);

      // The shipped types resolve through `exports` for a TypeScript consumer (nodenext, strict, lib checked).
      await writeFile(path.join(appDir, 'check.mts'), typesCheck);
      const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
      const tscArgs = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext'];
      await run(
        process.execPath,
        [tsc, ...tscArgs, '--target', 'es2022', '--lib', 'es2022,dom', 'check.mts'],
        {
          cwd: appDir,
          env,
          timeout: STEP_MS,
        },
      );

      await putConversation(t.http, 'sdk-pack', ['alice', 'bob']);
      await writeFile(path.join(appDir, 'chat.mjs'), consumerScript);
      const { stdout } = await run(process.execPath, ['chat.mjs', t.ws, 'sdk-pack'], {
        cwd: appDir,
        env,
        timeout: 30_000,
      });
      const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
        ack: { id: string; conversationId: string };
        message: { id: string; conversationId: string; from: string; body: unknown };
        relayError: string;
        bundle: { connect: string; exports: string[] };
        browser: { connect: string };
      };
      expect(result.message).toMatchObject({
        id: result.ack.id,
        conversationId: 'sdk-pack',
        from: 'alice',
        body: { text: 'hello from the tarball' },
      });
      expect(result.relayError).toBe('function');
      expect(result.bundle.connect).toBe('function');
      expect(result.bundle.exports).toEqual(
        expect.arrayContaining(['RelayClient', 'RelayError', 'connect', 'memoryStorage']),
      );
      expect(result.browser.connect).toBe('function');
    },
    3 * STEP_MS,
  );
});
