import { MemorySessionDriver } from '../../src/session/drivers/memory-session.driver';
import { sessionMapContract } from './session-map.contract';

sessionMapContract('memory', () => ({
  open: async (ttlMs) => new MemorySessionDriver(ttlMs),
  dispose: async () => undefined,
}));
