import { Injectable, Logger } from '@nestjs/common';
import { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { RateLimitedLog } from '../common/rate-limited-log';
import { Config } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { NodeStatus } from '../health/node-status';
import { AuthService, Principal } from './auth.service';

/** What the upgrade gets: either a principal to accept, or a refusal (HTTP status before the upgrade). */
export type AdmissionResult =
  | { ok: true; principal: Principal; ip: string }
  /**
   * `closeWith`: accept the upgrade and close at once with this code and reason instead of answering
   * HTTP `status` (browsers see an HTTP refusal only as close 1006, with no reason).
   */
  | { ok: false; status: number; reason: string; closeWith?: { code: number; reason: string } };

/**
 * Most per-IP attempt buckets kept at once. An address-spraying client (IPv6 gives plenty) cannot grow
 * the map beyond this; the least recently used bucket goes first, and it is the idlest one.
 */
export const MAX_IP_BUCKETS = 65_536;
/** Idle buckets checked for eviction per admission (amortised sweep of the LRU end). */
const SWEEP_PER_CALL = 2;

interface Bucket {
  tokens: number;
  at: number;
}

/** An admission granted but not yet taken up by `admitted` (the upgrade is being completed). */
interface Reservation {
  userId: string;
  ip: string;
  claimed: boolean;
}

/**
 * Connection admission for the WebSocket upgrade: the checks of docs/protocol.md, in order: draining
 * (503), Origin (403), per-IP attempt rate (429), node capacity and pending handshakes (503), per-IP live
 * connections (429), authentication (401, or accept-and-close 4001 for browsers), per-user live
 * connections (429).
 *
 * Invariants (all state is touched synchronously, on the event loop):
 * - `total`, `perIp`, `perUser` count live connections plus reservations: a reservation is taken the
 *   moment its checks pass (IP and total before the await on auth, user after it), so concurrent
 *   upgrades cannot overshoot a cap while one of them is authenticating.
 * - Every reservation ends exactly once: refused (released at once), claimed by `admitted` (then
 *   `released` ends it when the socket closes), or - when the upgrade never completes, e.g. the socket
 *   died during the handshake - released on the next turn of the event loop.
 * - `pending` counts connections between `admitted` and `handshakeEnded` (the server calls each once
 *   per connection).
 * - `buckets` never holds more than MAX_IP_BUCKETS entries; Map order is least recently used first.
 */
@Injectable()
export class AdmissionService {
  private readonly logger = new Logger(AdmissionService.name);
  /** One line per reason per 10 s: a storm of refused upgrades must not become a storm of log lines. */
  private readonly refusals = new RateLimitedLog((line) => this.logger.warn(line));
  private readonly buckets = new Map<string, Bucket>();
  private readonly perIp = new Map<string, number>();
  private readonly perUser = new Map<string, number>();
  private readonly unclaimed: Reservation[] = [];
  private readonly origins: Set<string> | null;
  private total = 0;
  private pending = 0;

  constructor(
    private readonly config: Config,
    private readonly auth: AuthService,
    private readonly status: NodeStatus,
    private readonly metrics: MetricsService,
  ) {
    const allowed = config.admission.allowedOrigins;
    this.origins = allowed && !allowed.includes('*') ? new Set(allowed.map(normalizeOrigin)) : null;
  }

  /** Decides on one upgrade request (path already checked). */
  async admit(req: IncomingMessage): Promise<AdmissionResult> {
    const a = this.config.admission;
    if (this.status.draining) return this.refuse(503, 'draining');
    const origin = req.headers.origin;
    if (origin !== undefined && this.origins && !this.origins.has(normalizeOrigin(origin))) {
      return this.refuse(403, 'origin_not_allowed');
    }
    const ip = this.clientIp(req);
    if (!this.takeAttempt(ip)) return this.refuse(429, 'ip_rate');
    if (this.total >= a.maxConnections) return this.refuse(503, 'node_full');
    if (this.pending + this.unclaimed.length >= a.maxPendingHandshakes) {
      return this.refuse(503, 'pending_handshakes');
    }
    if ((this.perIp.get(ip) ?? 0) >= a.maxConnectionsPerIp) return this.refuse(429, 'ip_connections');

    this.total++;
    bump(this.perIp, ip, 1);
    let authenticated;
    try {
      authenticated = await this.auth.authenticate(req);
    } catch (err) {
      this.unreserve(ip);
      throw err;
    }
    if ('failure' in authenticated) {
      this.unreserve(ip);
      const why = authenticated.failure;
      if (origin === undefined) return this.refuse(401, 'unauthorized');
      this.metrics.upgradesRefused.inc({ reason: 'unauthorized' });
      return {
        ok: false,
        status: 401,
        reason: 'unauthorized',
        closeWith: { code: 4001, reason: `unauthorized: ${why}` },
      };
    }
    const { principal } = authenticated;
    if (this.status.draining) {
      // The drain started while we authenticated: it has already asked every connection to leave.
      this.unreserve(ip);
      return this.refuse(503, 'draining');
    }
    if ((this.perUser.get(principal.userId) ?? 0) >= a.maxConnectionsPerUser) {
      this.unreserve(ip);
      return this.refuse(429, 'user_connections');
    }
    bump(this.perUser, principal.userId, 1);
    const reservation: Reservation = { userId: principal.userId, ip, claimed: false };
    this.unclaimed.push(reservation);
    // The server completes the upgrade and calls `admitted` before this runs; if it never does
    // (socket gone mid-handshake), the reservation must not hold a slot forever.
    setImmediate(() => {
      if (reservation.claimed) return;
      this.unclaimed.splice(this.unclaimed.indexOf(reservation), 1);
      this.release(reservation.userId, reservation.ip);
    });
    return { ok: true, principal, ip };
  }

  /** The upgraded connection now counts against the caps (paired with `released`). */
  admitted(userId: string, ip: string): void {
    const i = this.unclaimed.findIndex((r) => r.userId === userId && r.ip === ip);
    if (i >= 0) {
      this.unclaimed[i].claimed = true;
      this.unclaimed.splice(i, 1);
    } else {
      // Not reserved by admit() (or the reservation lapsed): count it now so `released` balances.
      this.total++;
      bump(this.perIp, ip, 1);
      bump(this.perUser, userId, 1);
    }
    this.pending++;
    this.metrics.pendingHandshakes.set(this.pending);
  }

  /** Its socket closed. */
  released(userId: string, ip: string): void {
    this.release(userId, ip);
  }

  /** hello received, or the connection closed before it: it no longer counts as pending. */
  handshakeEnded(): void {
    this.pending = Math.max(0, this.pending - 1);
    this.metrics.pendingHandshakes.set(this.pending);
  }

  /**
   * The hello timeout for a connection upgraded now; shrinks as pending handshakes pile up, so a
   * storm of silent connections cannot hold the pending slots for the full timeout.
   */
  handshakeTimeoutMs(): number {
    const base = this.config.gateway.handshakeTimeoutMs;
    const soft = this.config.admission.preHelloSoftLimit;
    if (this.pending <= soft) return base;
    return Math.min(base, Math.max(1_000, Math.floor((base * soft) / this.pending)));
  }

  /**
   * The socket address, or with TRUST_PROXY_HOPS=N the N-th X-Forwarded-For entry from the right
   * (the one our own outermost trusted proxy wrote); entries to its left are client-controlled.
   */
  clientIp(req: IncomingMessage): string {
    const socketIp = unmap(req.socket.remoteAddress ?? '');
    const hops = this.config.admission.trustProxyHops;
    if (hops <= 0) return socketIp;
    const header = req.headers['x-forwarded-for'];
    const entries = (Array.isArray(header) ? header.join(',') : (header ?? ''))
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (entries.length < hops) return socketIp;
    const forwarded = unmap(entries[entries.length - hops]);
    return isIP(forwarded) ? forwarded : socketIp;
  }

  private refuse(status: number, reason: string): AdmissionResult {
    this.metrics.upgradesRefused.inc({ reason });
    // Auth failures are logged by AuthService, with their reason.
    if (reason !== 'unauthorized') this.refusals.note(reason, `refused an upgrade with ${status}: ${reason}`);
    return { ok: false, status, reason };
  }

  /** Gives back the node and IP slots taken before authentication. */
  private unreserve(ip: string): void {
    this.total--;
    bump(this.perIp, ip, -1);
  }

  private release(userId: string, ip: string): void {
    this.total = Math.max(0, this.total - 1);
    bump(this.perIp, ip, -1);
    bump(this.perUser, userId, -1);
  }

  /** Takes one attempt token from the IP's bucket (refill CONNECT_RATE_PER_IP/s, size CONNECT_BURST_PER_IP). */
  private takeAttempt(ip: string): boolean {
    const { connectRatePerIp: rate, connectBurstPerIp: burst } = this.config.admission;
    const now = Date.now();
    this.sweepBuckets(now);
    const bucket = this.buckets.get(ip);
    const tokens = bucket ? Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate) : burst;
    if (bucket)
      this.buckets.delete(ip); // re-inserted below: most recently used goes last
    else if (this.buckets.size >= MAX_IP_BUCKETS) this.evictOldest();
    if (tokens < 1) {
      this.buckets.set(ip, { tokens, at: now });
      return false;
    }
    this.buckets.set(ip, { tokens: tokens - 1, at: now });
    return true;
  }

  /** A bucket that has refilled completely is the same as no bucket: drop a few from the idle end. */
  private sweepBuckets(now: number): void {
    const { connectRatePerIp: rate, connectBurstPerIp: burst } = this.config.admission;
    let checked = 0;
    for (const [ip, b] of this.buckets) {
      if (checked++ >= SWEEP_PER_CALL) break;
      if (b.tokens + ((now - b.at) / 1000) * rate < burst) break;
      this.buckets.delete(ip);
    }
  }

  private evictOldest(): void {
    const oldest = this.buckets.keys().next();
    if (!oldest.done) this.buckets.delete(oldest.value);
  }

  /** For tests and metrics: entries currently kept. */
  get trackedIps(): number {
    return this.buckets.size;
  }
}

function bump(map: Map<string, number>, key: string, by: number): void {
  const n = (map.get(key) ?? 0) + by;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}

/** `::ffff:10.0.0.1` and `10.0.0.1` are the same client. */
function unmap(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** Origins compare as `scheme://host[:port]`, case-insensitively, without a trailing slash. */
function normalizeOrigin(origin: string): string {
  return origin.trim().replace(/\/+$/, '').toLowerCase();
}
