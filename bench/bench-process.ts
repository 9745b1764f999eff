import { readFileSync } from 'node:fs';
import { AddressInfo, createServer, Socket } from 'node:net';

/** What the benches that start processes share: ports, readiness waits, reachability, /proc figures. */

/** A free loopback port (asked of the kernel, then released). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Polls `ok` every `stepMs` until it answers true; throws naming `what` after `ms`. */
export async function until(
  what: string,
  ms: number,
  ok: () => Promise<boolean>,
  stepMs = 100,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Resolves once host:port accepts a TCP connection; fails with `hint` (how to bring it up). */
export async function reachable(host: string, port: number, hint: string): Promise<void> {
  await new Promise<void>((ok, fail) => {
    const s = new Socket();
    s.setTimeout(2000);
    s.once('connect', () => (s.destroy(), ok()));
    s.once('timeout', () => (s.destroy(), fail(new Error(`${host}:${port} timed out (${hint})`))));
    s.once('error', (e) => fail(new Error(`${host}:${port} unreachable: ${e.message} (${hint})`)));
    s.connect(port, host);
  });
}

const CLK_TCK = 100; // Linux USER_HZ

/** CPU time (user + system) a process has used so far, in ms, from /proc. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}
