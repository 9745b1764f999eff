import { MemoryDirectoryStoreDriver } from '../../src/directory/drivers/memory-directory-store.driver';
import { directoryStoreContract } from './directory-store.contract';

directoryStoreContract('memory', () => ({
  open: async () => new MemoryDirectoryStoreDriver(),
  dispose: async () => undefined,
}));
