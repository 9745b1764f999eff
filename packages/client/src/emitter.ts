export type Listener<T> = (arg: T) => void;

/**
 * A tiny typed event emitter with no dependency, for browsers and Node alike. `E` maps each event
 * name to the single argument its listeners get.
 *
 * Listeners run synchronously, in registration order. A listener that throws does not stop the
 * others; the exception is passed to `listenerFailed`, which subclasses override.
 */
export class Emitter<E extends object> {
  private readonly listeners: { [K in keyof E]?: Set<Listener<E[K]>> } = {};

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    (this.listeners[event] ??= new Set()).add(listener);
    return () => this.off(event, listener);
  }

  off<K extends keyof E>(event: K, listener: Listener<E[K]>): void {
    this.listeners[event]?.delete(listener);
  }

  protected listenerCount<K extends keyof E>(event: K): number {
    return this.listeners[event]?.size ?? 0;
  }

  protected emit<K extends keyof E>(event: K, arg: E[K]): void {
    const set = this.listeners[event];
    if (!set) return;
    // Copy: a listener may add or remove listeners while we iterate.
    for (const listener of [...set]) {
      try {
        listener(arg);
      } catch (err) {
        this.listenerFailed(event, err);
      }
    }
  }

  /** Default: report asynchronously, like the DOM does for a throwing event handler. */
  protected listenerFailed(_event: keyof E, err: unknown): void {
    setTimeout(() => {
      throw err;
    }, 0);
  }
}
