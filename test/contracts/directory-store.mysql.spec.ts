import { DataSource } from 'typeorm';
import { MysqlDirectoryStoreDriver } from '../../src/directory/drivers/mysql-directory-store.driver';
import { ContractDatabase, contractDatabase } from './backends';
import { directoryStoreContract } from './directory-store.contract';

/**
 * The DirectoryStore contract on MysqlDirectoryStoreDriver against the MariaDB of scripts/infra.sh
 * (engines project), in a database of its own; small statements so chunking is exercised.
 */
jest.setTimeout(30_000);

directoryStoreContract('mysql', () => {
  let db: Promise<ContractDatabase> | null = null;
  let ds: DataSource | null = null;
  return {
    open: async () => {
      db ??= contractDatabase('contract-directory');
      ds ??= await (await db).open();
      await ds.query('DELETE FROM conversation'); // members go by cascade
      return new MysqlDirectoryStoreDriver(ds, 100);
    },
    dispose: async () => {
      if (db) await (await db).dispose();
    },
  };
});
