import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';

/** `npm run token` and `npm run chat` as a newcomer runs them: the built CLIs, against an app in jwt mode. */
const SECRET = 'dev-cli-secret-that-is-long-enough-for-hs256';
const ADMIN = 'dev-cli-admin-key';
const DIST = join(__dirname, '..', '..', 'dist', 'cli');
/** An empty working directory: no .env is picked up. */
const CWD = mkdtempSync(join(tmpdir(), 'relay-dev-cli-'));

interface Run {
  stdout: string;
  stderr: string;
  code: Promise<number | null>;
  stdin: NodeJS.WritableStream;
}

/** Runs a CLI from the build with only the given environment. */
function run(cli: string, args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, [join(DIST, cli), ...args], {
    cwd: CWD,
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Run = {
    stdout: '',
    stderr: '',
    stdin: child.stdin,
    code: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
  };
  child.stdout.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  return out;
}

describe('developer CLIs (dist/cli)', () => {
  let app: TestApp;
  const env = { AUTH_MODE: 'jwt', JWT_SECRET: SECRET, ADMIN_API_KEY: ADMIN };

  beforeAll(async () => {
    if (!existsSync(join(DIST, 'chat.cli.js')))
      throw new Error('dist/cli is missing: run `nest build` first');
    app = await startTestApp({ ...env, JWT_ISSUER: 'relay-dev', JWT_AUDIENCE: 'relay' });
    await putConversation(app.http, 'room', ['alice', 'bob'], { authorization: `Bearer ${ADMIN}` });
  });
  afterAll(() => app?.close());

  const cliEnv = { ...env, JWT_ISSUER: 'relay-dev', JWT_AUDIENCE: 'relay' };

  it('token prints only a token the app accepts for that user', async () => {
    const token = run('token.cli.js', ['bob', '--ttl', '10m'], cliEnv);
    expect(await token.code).toBe(0);
    expect(token.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const { client, welcome } = await TestClient.connect(`${app.ws}?token=${token.stdout.trim()}`);
    expect(welcome.payload?.user_id).toBe('bob');
    client.ws.close();
  });

  it('token refuses a ttl beyond JWT_MAX_LIFETIME_SEC and says why', async () => {
    const token = run('token.cli.js', ['bob', '--ttl', '2d'], cliEnv);
    expect(await token.code).toBe(1);
    expect(token.stdout).toBe('');
    expect(token.stderr).toMatch(/JWT_MAX_LIFETIME_SEC/);
  });

  it('chat sends piped lines as the user and they reach another member', async () => {
    const bobToken = run('token.cli.js', ['bob'], cliEnv);
    expect(await bobToken.code).toBe(0);
    const { client: bob } = await TestClient.connect(`${app.ws}?token=${bobToken.stdout.trim()}`);

    const chat = run('chat.cli.js', ['alice', 'room', '--url', app.ws], cliEnv);
    chat.stdin.write('hello from the terminal\n');
    const got = await bob.next((f) => f.type === 'message');
    expect(got.payload).toMatchObject({
      conversation_id: 'room',
      from: 'alice',
      body: { text: 'hello from the terminal' },
    });

    // What bob says shows up on alice's terminal.
    bob.send({
      type: 'send',
      msg_id: 'b1',
      payload: { conversation_id: 'room', body: { text: 'hi alice' } },
    });
    await waitFor(() => chat.stdout.includes('[room] bob: hi alice'), 5_000, "bob's line on alice's stdout");

    chat.stdin.end();
    expect(await chat.code).toBe(0);
    expect(chat.stderr).toMatch(/connected as alice/);
    bob.ws.close();
  });
});
