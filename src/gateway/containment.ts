import { Logger } from '@nestjs/common';
import { MetricsService } from '../metrics/metrics.service';
import { CLOSE } from '../protocol/frames';

/** What a boundary does to the connection it was handling: close 1011, or cut it if closing throws. */
export interface Closable {
  readonly id?: string;
  readonly userId: string;
  close(code: number, reason: string): void;
  terminate(): void;
}

/**
 * The containment boundary of socket events and timers: an unexpected exception is logged once (with
 * its stack), counted in `relay_contained_errors_total{where}` and costs the connection it was
 * handling a close 1011 (the client resumes from its cursor), never the process. Each user holds one,
 * built with its own logger so the log line names the class the exception escaped from.
 */
export class Containment {
  constructor(
    private readonly metrics: MetricsService,
    private readonly logger: Logger,
  ) {}

  /** Runs one socket/timer handler inside the boundary. */
  guard(where: string, conn: Closable | null, handler: () => void): void {
    try {
      handler();
    } catch (err) {
      this.contain(where, err, conn);
    }
  }

  /** An exception caught at a boundary: log it (with `fields`, e.g. the message id), count it, drop `conn` (if any). */
  contain(where: string, err: unknown, conn: Closable | null = null, fields?: Record<string, unknown>): void {
    this.metrics.contained.labels(where).inc();
    const what = err instanceof Error ? (err.stack ?? err.message) : String(err);
    const line = `unexpected error in ${where}${conn ? ` (user ${conn.userId})` : ''}: ${what}`;
    if (conn || fields)
      this.logger.error(line, { ...fields, ...(conn && { conn: conn.id, user: conn.userId }) });
    else this.logger.error(line);
    if (!conn) return;
    try {
      conn.close(CLOSE.internal, 'internal error');
    } catch {
      conn.terminate();
    }
  }
}
