import { DataSource } from 'typeorm';
import { MysqlOutboxDriver } from '../../src/outbox/drivers/mysql-outbox.driver';
import { ContractDatabase, contractDatabase } from './backends';
import { outboxStoreContract } from './outbox-store.contract';

/**
 * The OutboxStore contract on MysqlOutboxDriver against the MariaDB of scripts/infra.sh (engines
 * project globalSetup), in a database of its own; expiry is real time (the database's clock).
 */
const RETENTION_SEC = 2;

jest.setTimeout(60_000);

// Twice: with the optimistic append MariaDB allows (the default there) and with the careful path
// alone, which is what MySQL runs.
for (const optimistic of [true, false]) {
  outboxStoreContract(optimistic ? 'mysql' : 'mysql (careful path only)', () => {
    let db: Promise<ContractDatabase> | null = null;
    let main: DataSource | null = null;
    const stores = new Map<MysqlOutboxDriver, DataSource>();

    async function fresh(retentionSec: number): Promise<MysqlOutboxDriver> {
      db ??= contractDatabase('contract-outbox');
      main ??= await (await db).open();
      await main.query('TRUNCATE TABLE outbox_delivery');
      await main.query('TRUNCATE TABLE outbox_entry');
      await main.query('TRUNCATE TABLE outbox_head');
      const store = await new MysqlOutboxDriver(main, retentionSec, { optimistic }).init();
      stores.set(store, main);
      return store;
    }

    return {
      open: () => fresh(3600),
      peer: async () => {
        const ds = await (await db!).open(3);
        const store = await new MysqlOutboxDriver(ds, 3600, { optimistic }).init();
        stores.set(store, ds);
        return store;
      },
      openExpiring: async () => ({
        store: await fresh(RETENTION_SEC),
        // expires_at = the database's NOW(3) + retention, set before the append resolved.
        expire: () => new Promise((r) => setTimeout(r, RETENTION_SEC * 1_000 + 100)),
      }),
      dispose: async () => {
        if (db) await (await db).dispose();
      },
    };
  });
}
