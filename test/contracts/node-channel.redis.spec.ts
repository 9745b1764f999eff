import { RedisChannelDriver } from '../../src/session/drivers/redis-channel.driver';
import { ContractRedis, contractRedis } from './backends';
import { nodeChannelContract } from './node-channel.contract';

/**
 * The NodeChannel contract on RedisChannelDriver against the Redis of scripts/infra.sh (engines
 * project): every channel is a node of its own (own connections), channels carry a per-network prefix.
 */
jest.setTimeout(20_000);

nodeChannelContract('redis', () => {
  const backends: ContractRedis[] = [];
  const channels: RedisChannelDriver[] = [];
  return {
    network: () => {
      const backend = contractRedis('channels');
      backends.push(backend);
      return {
        channel: async () => {
          const channel = new RedisChannelDriver(backend.node());
          channels.push(channel);
          return channel;
        },
      };
    },
    dispose: async () => {
      await Promise.allSettled(channels.map((c) => c.unsubscribe()));
      await Promise.all(backends.map((b) => b.dispose()));
    },
  };
});
