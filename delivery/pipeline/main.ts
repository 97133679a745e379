// Entry point of a standalone delivery process: `node --import tsx/esm delivery/pipeline/main.ts`.
import { runMain } from '../../platform/main.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { runDelivery } from './run.ts';

await runMain('delivery', async (config, logger) => {
  const registry = createMetricsRegistry({ process: 'delivery' });
  const delivery = await runDelivery(config, logger, { metrics: registry });
  return { stop: () => delivery.stop(), registry, health: () => delivery.health() };
});
