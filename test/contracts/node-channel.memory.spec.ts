import { MemoryChannelDriver } from '../../src/session/drivers/memory-channel.driver';
import { nodeChannelContract } from './node-channel.contract';

nodeChannelContract('memory', () => ({
  network: () => {
    const channel = new MemoryChannelDriver(); // one process: every node of the network is this instance
    return { channel: async () => channel };
  },
  dispose: async () => undefined,
}));
