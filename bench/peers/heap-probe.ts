/**
 * Preloaded into every benchmarked server (`node --expose-gc --require heap-probe.js`): answers the
 * orchestrator's `heap` probe over the IPC channel with the heap used after a full GC, so idle heap
 * per connection is measured the same way for relay and its peers. `{ snapshot: path }` writes a heap
 * snapshot there after the same GC (bench/heap-diff.ts) and answers with the heap used and the path.
 */
import { writeHeapSnapshot } from 'node:v8';

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
}

if (process.send) {
  process.on('message', (m: unknown) => {
    if (m === 'heap') {
      collect();
      process.send?.({ heap: process.memoryUsage().heapUsed });
    } else if (
      typeof m === 'object' &&
      m !== null &&
      typeof (m as { snapshot?: unknown }).snapshot === 'string'
    ) {
      collect();
      const heap = process.memoryUsage().heapUsed;
      try {
        process.send?.({ heap, snapshot: writeHeapSnapshot((m as { snapshot: string }).snapshot) });
      } catch (err) {
        process.send?.({ ok: false, error: (err as Error).message });
      }
    }
  });
}
