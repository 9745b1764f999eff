import { RedisPresenceDriver } from '../../src/presence/drivers/redis-presence.driver';
import { ContractRedis, contractRedis } from './backends';
import { CONTRACT_TTL_MS, presenceStoreContract } from './presence-store.contract';

/** The PresenceStore contract on RedisPresenceDriver (engines project): each store is a node of its own. */
jest.setTimeout(20_000);

presenceStoreContract('redis', () => {
  const backend: ContractRedis = contractRedis('presence');
  return {
    store: async (now) => new RedisPresenceDriver(backend.node(), CONTRACT_TTL_MS, now),
    dispose: () => backend.dispose(),
  };
});
