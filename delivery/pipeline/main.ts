// Entry point of a standalone delivery process: `node --import tsx/esm delivery/pipeline/main.ts`.
import { loadConfig } from '../../platform/config.ts';
import { createLogger } from '../../platform/logger.ts';
import { onShutdown } from '../../platform/shutdown.ts';
import { runDelivery } from './run.ts';

const config = loadConfig();
const logger = createLogger({ level: config.log.level, name: 'delivery' });
const delivery = await runDelivery(config, logger);
onShutdown(logger, () => delivery.stop());
logger.info('delivery running');
