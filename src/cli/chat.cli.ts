import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { loadConfig } from '../config/app-config';
import { loadDotEnv } from '../config/dotenv';
import { ConfigError } from '../config/env.validation';
import { mintDevToken, TokenError } from './dev-token';

/**
 * A tiny terminal client for trying relay out (not the SDK: no reconnect, no resume):
 *
 *   npm run chat -- <user> [conversation] [--url ws://host:port/ws]
 *
 * Each line typed is sent to the conversation (default `general`); `/to <conversation>` switches.
 * Messages arrive on stdout as `[conversation] from: text`; status and errors go to stderr. Auth follows
 * the service's configuration (environment, then .env): `?token=` minted from JWT_SECRET when
 * AUTH_MODE=jwt, else `?user_id=`. At end of input it waits for the acks of what it sent, then exits.
 */
const USAGE = 'usage: npm run chat -- <user> [conversation] [--url ws://127.0.0.1:3000/ws]';

interface Frame {
  type: string;
  msg_id?: string;
  payload?: { conversation_id?: string; from?: string; body?: unknown; code?: string; message?: string };
}

const show = (body: unknown) =>
  body !== null && typeof body === 'object' && typeof (body as { text?: unknown }).text === 'string'
    ? (body as { text: string }).text
    : JSON.stringify(body);

async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  let url: string | undefined;
  const at = args.indexOf('--url');
  if (at >= 0) {
    url = args[at + 1];
    args.splice(at, 2);
  }
  if (args.length < 1 || args.length > 2 || args.some((a) => a.startsWith('-')) || url === '') {
    console.error(USAGE);
    return 2;
  }
  const [user, first = 'general'] = args;
  loadDotEnv();
  let query: string;
  try {
    const config = loadConfig();
    url ??= `ws://127.0.0.1:${config.port}/ws`;
    query =
      config.auth.mode === 'jwt'
        ? `token=${await mintDevToken(config.auth, user)}`
        : `user_id=${encodeURIComponent(user)}`;
  } catch (err) {
    if (err instanceof ConfigError || err instanceof TokenError) {
      console.error(err.message);
      return err instanceof ConfigError ? 78 : 1;
    }
    throw err;
  }
  return chat(`${url}${url.includes('?') ? '&' : '?'}${query}`, user, first);
}

function chat(url: string, user: string, first: string): Promise<number> {
  return new Promise((resolve) => {
    let conversation = first;
    const pending = new Set<string>();
    let inputDone = false;
    let seq = 0;
    const session = randomBytes(4).toString('hex');
    const ws = new WebSocket(url);
    const rl = createInterface({ input: process.stdin, terminal: false });
    const status = (line: string) => process.stderr.write(`${line}\n`);
    const finishIfDone = () => {
      if (inputDone && pending.size === 0) ws.close(1000);
    };

    ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', payload: {} })));
    let failed = false;
    ws.on('unexpected-response', (_req, res) => {
      failed = true;
      status(`connection refused: HTTP ${res.statusCode} (is the server running, and the user allowed?)`);
      resolve(1);
    });
    ws.on('error', (err) => {
      failed = true;
      status(`connection failed: ${err.message} (is \`npm start\` running?)`);
      resolve(1);
    });
    ws.on('close', (code, reason) => {
      rl.close();
      if (!failed && !(inputDone && code === 1000))
        status(`disconnected: ${code} ${reason.toString()}`.trim());
      resolve(inputDone && code === 1000 ? 0 : 1);
    });
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as Frame;
      const p = frame.payload ?? {};
      if (frame.type === 'welcome') {
        status(
          `connected as ${user}; sending to ${conversation} (/to <conversation> switches, Ctrl-D quits)`,
        );
      } else if (frame.type === 'message') {
        process.stdout.write(`[${p.conversation_id}] ${p.from}: ${show(p.body)}\n`);
      } else if (frame.type === 'ack') {
        pending.delete((p as { ref?: string }).ref ?? '');
        finishIfDone();
      } else if (frame.type === 'error') {
        if (frame.msg_id) pending.delete(frame.msg_id);
        status(`error ${p.code}: ${p.message}`);
        finishIfDone();
      }
    });

    // Lines typed before the socket opens wait for it; the server holds them until `welcome` is out.
    const opened = new Promise<void>((ok) => ws.once('open', () => ok()));
    rl.on('line', (line) => {
      const text = line.trim();
      if (!text) return;
      const to = /^\/to\s+(\S+)$/.exec(text);
      if (to) {
        conversation = to[1];
        status(`sending to ${conversation}`);
        return;
      }
      const ref = `chat-${session}-${++seq}`;
      pending.add(ref);
      const frame = { type: 'send', msg_id: ref, payload: { conversation_id: conversation, body: { text } } };
      void opened.then(() => ws.send(JSON.stringify(frame)));
    });
    rl.on('close', () => {
      inputDone = true;
      void opened.then(finishIfDone);
    });
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`fatal: ${err.message}`);
    process.exit(1);
  },
);
