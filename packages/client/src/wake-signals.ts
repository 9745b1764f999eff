/**
 * Browser signals that a reconnect is worth trying right now rather than after the back-off: the
 * network came back (`online` on the window) or the user returned to the tab (`visibilitychange`
 * to visible; background tabs throttle timers, so a back-off may have stretched far beyond its
 * delay). Looked up on globalThis at run time so Node and workers, which lack them, simply get none.
 */

/** The part of EventTarget used here (window, document, or a test's fake). */
interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

type Globals = Partial<EventTargetLike> & {
  document?: Partial<EventTargetLike> & { visibilityState?: string };
};

/** Calls `wake` on each signal; returns the function that removes the listeners. */
export function listenForWake(wake: () => void): () => void {
  const g = globalThis as unknown as Globals;
  const removers: (() => void)[] = [];
  const listen = (target: Partial<EventTargetLike> | undefined, type: string, listener: () => void) => {
    if (typeof target?.addEventListener !== 'function' || typeof target.removeEventListener !== 'function')
      return;
    target.addEventListener(type, listener);
    removers.push(() => target.removeEventListener?.(type, listener));
  };
  listen(g, 'online', wake);
  const doc = g.document;
  listen(doc, 'visibilitychange', () => {
    if (doc?.visibilityState === 'visible') wake();
  });
  return () => removers.splice(0).forEach((remove) => remove());
}
