import { MemoryDedupeDriver } from '../../src/session/drivers/memory-dedupe.driver';
import { sendDedupeContract } from './send-dedupe.contract';

sendDedupeContract('memory', () => ({
  open: async (windowMs) => new MemoryDedupeDriver(windowMs),
  peer: async (dedupe) => dedupe, // one process: every connection shares the instance
  dispose: async () => undefined,
}));
