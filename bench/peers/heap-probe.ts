/**
 * Preloaded into every benchmarked server (`node --expose-gc --require heap-probe.js`): answers the
 * orchestrator's `heap` probe over the IPC channel with the heap used after a full GC, so idle heap
 * per connection is measured the same way for relay and its peers.
 */
if (process.send) {
  process.on('message', (m: unknown) => {
    if (m !== 'heap') return;
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) {
      gc();
      gc();
    }
    process.send?.({ heap: process.memoryUsage().heapUsed });
  });
}
