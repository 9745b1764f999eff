import { MemoryOutboxDriver } from '../../src/outbox/drivers/memory-outbox.driver';
import { outboxStoreContract } from './outbox-store.contract';

const RETENTION_MS = 100;

outboxStoreContract('memory', () => ({
  open: async () => new MemoryOutboxDriver(3_600_000),
  peer: async (store) => store, // one process holds the whole store
  openExpiring: async () => {
    let now = 1_000;
    const store = new MemoryOutboxDriver(RETENTION_MS, () => now);
    return {
      store,
      expire: async () => {
        now += RETENTION_MS + 1;
      },
    };
  },
  dispose: async () => undefined,
}));
