import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { verifySignature } from '../../src/webhooks/webhook-signature';

export interface ReceivedEvent {
  id: string;
  kind: string;
  conversation_id?: string;
  [k: string]: unknown;
}

/**
 * A webhook endpoint for tests: verifies every POST's signature, records the events of the POSTs
 * it answers 2xx, and can be made to fail (answer 503) or disappear (connections refused).
 */
export class WebhookReceiver {
  /** Events of accepted POSTs, in arrival order (duplicates included: relay is at-least-once). */
  readonly events: ReceivedEvent[] = [];
  posts = 0;
  refused = 0;
  badSignatures = 0;
  /** Answer 503 to every POST while set. */
  failing = false;
  private server: Server | null = null;
  private port = 0;

  constructor(private readonly secret: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => void this.onRequest(req, res));
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening (relay's POSTs get connection refused) until start() again on the same port. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Each event id once, first occurrence order. */
  unique(): ReceivedEvent[] {
    const seen = new Set<string>();
    return this.events.filter((e) => !seen.has(e.id) && seen.add(e.id));
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    this.posts++;
    if (!verifySignature(this.secret, req.headers['relay-signature'] as string | undefined, body)) {
      this.badSignatures++;
      res.writeHead(400).end('bad signature');
      return;
    }
    if (this.failing) {
      this.refused++;
      res.writeHead(503).end('try later');
      return;
    }
    const { events } = JSON.parse(body) as { events: ReceivedEvent[] };
    this.events.push(...events);
    res.writeHead(204).end();
  }
}
