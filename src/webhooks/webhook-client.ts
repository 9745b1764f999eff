import { Injectable } from '@nestjs/common';

/** The outcome of one POST: 2xx = delivered; anything else is retried. */
/** `reason` is a metric label (bounded: http_3xx/4xx/5xx, timeout, network); `detail` is for the log. */
export type PostOutcome = { ok: true } | { ok: false; reason: string; detail: string };

/** The webhooks' only I/O: one HTTP POST with a deadline (a test or another transport can replace it). */
@Injectable()
export class WebhookClient {
  async post(
    url: string,
    headers: Record<string, string>,
    body: string,
    timeoutMs: number,
  ): Promise<PostOutcome> {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers,
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      // The answer's body is not needed; reading it frees the connection.
      await res.arrayBuffer().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { ok: true };
      return { ok: false, reason: `http_${Math.floor(res.status / 100)}xx`, detail: `HTTP ${res.status}` };
    } catch (err) {
      const e = err as Error;
      const reason = e.name === 'TimeoutError' ? 'timeout' : 'network';
      return { ok: false, reason, detail: `${reason}: ${e.message}` };
    }
  }
}
