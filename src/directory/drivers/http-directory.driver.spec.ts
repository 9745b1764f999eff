import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { DirectoryUnavailableError } from '../conversation-directory';
import { HttpDirectoryDriver } from './http-directory.driver';

describe('HttpDirectoryDriver (upstream conversation service)', () => {
  let server: Server;
  let base = '';
  const hits: string[] = [];
  let members: Record<string, string[]> = {};
  let failing = false;
  let status = 500;

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits.push(req.url ?? '');
      if (failing) return void res.writeHead(status).end();
      const m = /^\/conversations\/([^/]+)\/members$/.exec(req.url ?? '');
      const list = m ? members[decodeURIComponent(m[1])] : undefined;
      if (!list) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ members: list }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((r) => server.close(r)));
  beforeEach(() => {
    hits.length = 0;
    members = { 'room 1': ['a', 'b'] };
    failing = false;
    status = 500;
  });

  it('reads members, maps 404 to "does not exist", and caches both for the TTL', async () => {
    const d = new HttpDirectoryDriver(base, 60_000, 1_000);
    const first = await d.members(['room 1', 'nope']);
    expect(first.get('room 1')).toEqual(['a', 'b']);
    expect(first.get('nope')).toBeNull();
    members['room 1'] = ['changed'];
    const again = await d.members(['room 1', 'nope']);
    expect(again.get('room 1')).toEqual(['a', 'b']);
    expect(hits.sort()).toEqual(['/conversations/nope/members', '/conversations/room%201/members']);
  });

  it('refetches after the TTL and shares one request among concurrent lookups', async () => {
    const d = new HttpDirectoryDriver(base, 0, 1_000);
    await Promise.all([d.members(['room 1']), d.members(['room 1']), d.members(['room 1'])]);
    expect(hits).toHaveLength(1);
    members['room 1'] = ['c'];
    expect((await d.members(['room 1'])).get('room 1')).toEqual(['c']);
  });

  it('fails (so the caller can answer unavailable or retry) when the service errors', async () => {
    failing = true;
    const d = new HttpDirectoryDriver(base, 60_000, 1_000);
    await expect(d.members(['room 1'])).rejects.toThrow('500');
  });

  it('says which failures are the service being unavailable (the router retries those, never quarantines)', async () => {
    failing = true;
    for (const code of [500, 503, 429, 401]) {
      status = code;
      const d = new HttpDirectoryDriver(base, 60_000, 1_000);
      await expect(d.members(['room 1'])).rejects.toBeInstanceOf(DirectoryUnavailableError);
    }
    status = 400;
    const d = new HttpDirectoryDriver(base, 60_000, 1_000);
    const err = await d.members(['room 1']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(DirectoryUnavailableError);
  });
});
