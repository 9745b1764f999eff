import { RedisSessionDriver } from '../../src/session/drivers/redis-session.driver';
import { ContractRedis, contractRedis } from './backends';
import { sessionMapContract } from './session-map.contract';

/** The SessionMap contract on RedisSessionDriver against the Redis of scripts/infra.sh (engines project). */
jest.setTimeout(20_000);

sessionMapContract('redis', () => {
  const backends: ContractRedis[] = [];
  return {
    // A key prefix per map: the node registry is one key per prefix.
    open: async (ttlMs) => {
      const backend = contractRedis('sessions');
      backends.push(backend);
      return new RedisSessionDriver(backend.node(), ttlMs);
    },
    dispose: async () => {
      await Promise.all(backends.map((b) => b.dispose()));
    },
  };
});
