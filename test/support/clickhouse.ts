// A ClickHouse database of the test's own, on whichever backend the config names.
import { createAnalyticsStore, type EngineAnalyticsStore } from '../../analytics/store.ts';
import type { Config } from '../../platform/config.ts';

export interface TestDatabase {
  /** A store whose default database is the test's database. */
  store: EngineAnalyticsStore;
  database: string;
  /** Drops the database and closes the store. */
  drop(): Promise<void>;
}

export async function createTestDatabase(
  config: Pick<Config, 'clickhouse'>,
): Promise<TestDatabase> {
  const database = config.clickhouse.database;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database))
    throw new Error(`not a plain database name: ${database}`);
  const admin = await createAnalyticsStore({ ...config.clickhouse, database: 'default' });
  await admin.command(`CREATE DATABASE IF NOT EXISTS ${database}`);
  if (config.clickhouse.backend === 'chdb') {
    // chDB has no per-connection default database: qualify table names, and keep one store.
    return {
      store: admin,
      database,
      drop: async () => {
        await admin.command(`DROP DATABASE IF EXISTS ${database}`);
        await admin.close();
      },
    };
  }
  await admin.close();
  const store = await createAnalyticsStore(config.clickhouse);
  return {
    store,
    database,
    drop: async () => {
      await store.command(`DROP DATABASE IF EXISTS ${database}`);
      await store.close();
    },
  };
}
