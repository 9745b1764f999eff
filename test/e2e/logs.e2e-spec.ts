import { putConversation, startTestApp, TestApp } from '../support/test-app';
import { waitFor } from '../support/wait-for';
import { TestClient } from '../support/ws-client';
import { signHs256 } from '../support/jwt';

const SECRET = 'test-secret-that-is-long-enough-for-hs256';
const ADMIN = 'admin-key-for-tests';

const sign = (sub: string) => signHs256(SECRET, sub);

type Line = Record<string, unknown> & { level: string; message: unknown; context?: string };

/**
 * LOG_FORMAT=json: every line on stdout is one JSON object, and the lines that concern a message or a
 * connection carry its id as a top-level field (`msg`, `conn`). Nest's ConsoleLogger writes through
 * process.stdout.write, which the suite captures.
 */
describe('structured logs', () => {
  let t: TestApp;
  const raw: string[] = [];
  let write: jest.SpyInstance;

  beforeAll(async () => {
    const original = process.stdout.write.bind(process.stdout);
    write = jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: unknown, ...rest: never[]) => {
      if (typeof chunk === 'string' && chunk.startsWith('{')) {
        raw.push(chunk);
        return true;
      }
      return original(chunk as string, ...rest);
    }) as typeof process.stdout.write);
    t = await startTestApp({
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'debug',
      AUTH_MODE: 'jwt',
      JWT_SECRET: SECRET,
      ADMIN_API_KEY: ADMIN,
    });
    await putConversation(t.http, 'c', ['alice', 'bob'], { authorization: `Bearer ${ADMIN}` });
  });
  afterAll(async () => {
    await t?.close();
    write.mockRestore();
  });

  const lines = (): Line[] =>
    raw.flatMap((chunk) => chunk.split('\n').filter(Boolean)).map((l) => JSON.parse(l) as Line);

  it("finds one message's id on a gateway ingress line and on a router line, the connection's lifecycle, and never a token", async () => {
    const aliceToken = await sign('alice');
    const bobToken = await sign('bob');
    const { client: alice } = await TestClient.connect(`${t.ws}?token=${aliceToken}`);
    const { client: bob } = await TestClient.connect(`${t.ws}?token=${bobToken}`);
    const ack = await alice.sendMessage('c', 'traced', 'r-1');
    expect(ack.type).toBe('ack');
    const id = String(ack.msg_id);
    await bob.messages(1);

    const ingress = (await waitFor(
      () => lines().find((l) => l.msg === id && l.context === 'IngressService'),
      5_000,
      'the ingress line of the message',
    )) as Line;
    expect(ingress).toMatchObject({ level: 'debug', message: 'published', ref: 'r-1' });
    expect(typeof ingress.conn).toBe('string');
    const routed = await waitFor(
      () => lines().find((l) => l.msg === id && l.context === 'RouterService'),
      5_000,
      'the router line of the message',
    );
    expect(routed).toMatchObject({ level: 'debug', message: 'routed', conversation: 'c' });

    // The connection that sent it: open (user, ip), welcome (recovered), close (code), one id throughout.
    const conn = ingress.conn;
    alice.ws.close(1000, 'bye');
    await waitFor(
      () => lines().some((l) => l.conn === conn && l.message === 'connection closed'),
      5_000,
      'the close line',
    );
    const ofConn = lines().filter((l) => l.conn === conn);
    expect(ofConn.find((l) => l.message === 'connection open')).toMatchObject({
      context: 'GatewayServer',
      user: 'alice',
      ip: '127.0.0.1',
    });
    expect(ofConn.find((l) => l.message === 'welcome')).toMatchObject({ user: 'alice', recovered: true });
    expect(ofConn.find((l) => l.message === 'connection closed')).toMatchObject({
      user: 'alice',
      code: 1000,
    });

    for (const l of lines()) expect(typeof l.timestamp).toBe('number');
    const all = raw.join('');
    expect(all).not.toContain(aliceToken);
    expect(all).not.toContain(bobToken);
    expect(all).not.toContain(SECRET);
    bob.terminate();
  });
});
