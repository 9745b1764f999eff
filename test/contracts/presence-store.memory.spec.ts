import { MemoryPresenceDriver } from '../../src/presence/drivers/memory-presence.driver';
import { CONTRACT_TTL_MS, presenceStoreContract } from './presence-store.contract';

presenceStoreContract('memory', () => {
  // One process: every node's view is the same instance (the clock of the first call wins).
  let shared: MemoryPresenceDriver | null = null;
  let clock: () => number = Date.now;
  return {
    store: async (now) => {
      clock = now;
      shared ??= new MemoryPresenceDriver(CONTRACT_TTL_MS, () => clock());
      return shared;
    },
    dispose: async () => undefined,
  };
});
