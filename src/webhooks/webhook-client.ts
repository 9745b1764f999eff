import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** `reason` is a metric label (bounded: http_3xx/4xx/5xx, timeout, network); `detail` is for the log. */
export type PostOutcome = { ok: true } | { ok: false; reason: string; detail: string };

/**
 * The webhooks' only I/O: one HTTP POST with a deadline, on keep-alive connections (node:http costs
 * less CPU per request than fetch, and webhook POSTs share the router's process). Replaceable in tests.
 */
@Injectable()
export class WebhookClient implements OnApplicationShutdown {
  private readonly http = new HttpAgent({ keepAlive: true, maxSockets: 16 });
  private readonly https = new HttpsAgent({ keepAlive: true, maxSockets: 16 });

  post(url: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<PostOutcome> {
    return new Promise<PostOutcome>((resolve) => {
      const secure = url.startsWith('https:');
      const req = (secure ? httpsRequest : httpRequest)(
        url,
        {
          method: 'POST',
          agent: secure ? this.https : this.http,
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
          timeout: timeoutMs,
        },
        (res) => {
          res.resume(); // the answer's body is not needed; draining it frees the connection
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) resolve({ ok: true });
          else resolve({ ok: false, reason: `http_${Math.floor(status / 100)}xx`, detail: `HTTP ${status}` });
        },
      );
      // `timeout` fires on socket inactivity; the overall deadline below bounds a slow trickle too.
      const deadline = setTimeout(() => req.destroy(new TimeoutError(timeoutMs)), timeoutMs);
      req.on('timeout', () => req.destroy(new TimeoutError(timeoutMs)));
      req.on('error', (err) => {
        const reason = err instanceof TimeoutError ? 'timeout' : 'network';
        resolve({ ok: false, reason, detail: `${reason}: ${err.message}` });
      });
      req.on('close', () => clearTimeout(deadline));
      req.end(body);
    });
  }

  onApplicationShutdown(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

class TimeoutError extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
  }
}
