/**
 * One kafkajs client (producer or admin) that can be swapped for a fresh one.
 *
 * Invariants: at most one connect runs for the current client, and callers share it; a connect
 * finishing for a client that was replaced meanwhile never marks the new one ready; `replace(expected)`
 * only replaces when `expected` is still current, so concurrent failure handlers replace once.
 */
export class ClientSlot<T extends { connect(): Promise<void>; disconnect(): Promise<void> }> {
  private client: T;
  private ready = false;
  private connecting: Promise<void> | null = null;

  constructor(
    private readonly create: () => T,
    private readonly retire: (old: T) => void,
  ) {
    this.client = create();
  }

  get current(): T {
    return this.client;
  }

  /** Resolves once the current client is connected (connecting it if needed). */
  async connected(): Promise<void> {
    if (this.ready) return;
    if (!this.connecting) {
      const client = this.client;
      const connecting = client.connect().then(() => {
        if (client === this.client) this.ready = true;
      });
      this.connecting = connecting;
      void connecting
        .catch(() => undefined)
        .then(() => {
          if (this.connecting === connecting) this.connecting = null;
        });
    }
    await this.connecting;
  }

  replace(expected: T): void {
    if (expected !== this.client) return; // already replaced
    const old = this.client;
    this.client = this.create();
    this.ready = false;
    this.connecting = null;
    this.retire(old);
  }

  /** Waits for a connect in progress, then disconnects the current client. */
  async close(): Promise<void> {
    if (this.connecting) await this.connecting.catch(() => undefined);
    this.ready = false;
    await this.client.disconnect();
  }
}
