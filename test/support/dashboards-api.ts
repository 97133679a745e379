// For the dashboards' integration tests: the API server (in-memory delivery stores, no
// Redis) over an analytics store loaded with the hand-worked datasets of analytics/fixtures.ts.
import type { FastifyInstance } from 'fastify';
import { COHORT_EVENTS, COHORT_SENDS, DELIVERIES, EVENTS, SENDS } from './analytics-fixtures.ts';
import { deliveryRow, ensureSchema, eventRow, sendRow } from '../../analytics/index.ts';
import { createApiServer } from '../../bin/api.ts';
import { createMemoryDeliveryStores } from '../../delivery/index.ts';
import { createMemoryInbox, createMemoryLiveChannel } from '../../delivery/inapp/index.ts';
import type { AnalyticsStore } from '../../analytics/store.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import type { Config } from '../../platform/config.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';

/** Both datasets, every row twice (a replay not merged yet must not count twice). */
export async function loadFixtures(store: AnalyticsStore, database: string): Promise<void> {
  await ensureSchema(store, database, { payloadTtlDays: 30 });
  for (let round = 0; round < 2; round++) {
    await store.insert(`${database}.events`, [...EVENTS, ...COHORT_EVENTS].map(eventRow));
    await store.insert(`${database}.sends`, [...SENDS, ...COHORT_SENDS].map(sendRow));
    await store.insert(`${database}.deliveries`, DELIVERIES.map(deliveryRow));
  }
}

/** Without `analytics`, the API opens its own store from the config, as `lifecycle run api` does. */
export async function fixtureApi(
  config: Readonly<Config>,
  analytics?: AnalyticsStore,
): Promise<FastifyInstance> {
  return createApiServer(config, {
    memory: {
      stores: createMemoryDeliveryStores(),
      inbox: createMemoryInbox(),
      live: createMemoryLiveChannel(),
    },
    publisher: new InMemoryBus(1).publisher(),
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
    ...(analytics ? { analytics } : {}),
  });
}
