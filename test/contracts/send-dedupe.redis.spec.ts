import { RedisDedupeDriver } from '../../src/session/drivers/redis-dedupe.driver';
import { SendDedupe } from '../../src/session/send-dedupe';
import { ContractRedis, contractRedis } from './backends';
import { sendDedupeContract } from './send-dedupe.contract';

/** The SendDedupe contract on RedisDedupeDriver against the Redis of scripts/infra.sh (engines project). */
jest.setTimeout(20_000);

sendDedupeContract('redis', () => {
  const backends = new Map<SendDedupe, ContractRedis>();
  return {
    open: async (windowMs) => {
      const backend = contractRedis('dedupe');
      const dedupe = new RedisDedupeDriver(backend.node(), windowMs);
      backends.set(dedupe, backend);
      return dedupe;
    },
    // Another node: its own connections, the same keys.
    peer: async (dedupe, windowMs) => {
      const backend = backends.get(dedupe)!;
      const peer = new RedisDedupeDriver(backend.node(), windowMs);
      backends.set(peer, backend);
      return peer;
    },
    dispose: async () => {
      await Promise.all([...new Set(backends.values())].map((b) => b.dispose()));
    },
  };
});
