// The scheduler process: recurring rules and campaigns fanned out onto the events topic, its
// user directory, progress and campaign audiences in Redis, rules hot-reloaded from the rules
// folder, campaigns followed on the campaigns topic. `runScheduler`
// is what `lifecycle run scheduler` calls; run this file directly
// (`node --import tsx/esm engine/scheduler/main.ts`) for a bare scheduler configured from the environment.
import type { Logger } from 'pino';
import type { Config } from '../../platform/config.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { createRedis } from '../../platform/redis.ts';
import { createMetricsRegistry, type Registry } from '../../platform/metrics.ts';
import { isMain, runMain } from '../../platform/main.ts';
import { openRuleSet } from '../../rules/index.ts';
import { topics } from '../../platform/contracts.ts';
import { createRedisAudienceLists } from '../campaigns/audience.ts';
import {
  createCampaignTable,
  createRedisCampaignLocks,
  type CampaignTable,
} from '../campaigns/table.ts';
import { campaignJobs } from './campaign-jobs.ts';
import { createRedisDirectory } from './directory.ts';
import { createRedisProgressStore } from './progress.ts';
import { seedDirectoryFromEngineState } from './seed.ts';
import {
  createSchedulerService,
  schedulerConfigFrom,
  type SchedulerService,
} from './scheduler-service.ts';

export interface RunningScheduler {
  service: SchedulerService;
  campaigns: CampaignTable;
  registry: Registry;
  /** Graceful: running fan-outs stop after their current page (position stored), then clients close. */
  stop(): Promise<void>;
}

export async function runScheduler(
  config: Readonly<Config>,
  logger: Logger,
  opts: { registry?: Registry; clock?: () => number } = {},
): Promise<RunningScheduler> {
  const log = logger.child({ component: 'scheduler' });
  const rules = await openRuleSet(config.engine.rulesDir, { logger: log });
  const registry = opts.registry ?? createMetricsRegistry({ process: 'scheduler' });
  const bus = KafkaBus.fromConfig(config, logger);
  const { redis, keys } = createRedis(config.redis, logger);
  const directory = createRedisDirectory(redis, keys);
  const t = topics(config.kafka.topicPrefix);
  const campaigns = createCampaignTable(
    { topics: t },
    {
      bus,
      publisher: bus.publisher(),
      locks: createRedisCampaignLocks({ redis, keys }),
      logger,
      registry,
    },
  );
  const lists = createRedisAudienceLists({ redis, keys });
  const service = createSchedulerService(schedulerConfigFrom(config), {
    bus,
    directory,
    jobs: () =>
      campaignJobs({
        table: campaigns,
        lists,
        directory,
        defaultRate: config.engine.campaignRate,
        logger,
        ...(opts.clock ? { clock: opts.clock } : {}),
      }),
    seed: () => seedDirectoryFromEngineState({ redis, keys, directory, logger }),
    progress: createRedisProgressStore(redis, keys),
    ruleSet: rules.current,
    committedOffsets: (groupId, topic) => bus.committedOffsets(groupId, topic),
    logger,
    registry,
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  try {
    await campaigns.start();
    await service.start();
  } catch (err) {
    await campaigns.stop().catch(() => undefined);
    await rules.close();
    await bus.close();
    redis.disconnect();
    throw err;
  }
  return {
    service,
    campaigns,
    registry,
    async stop() {
      await service.stop();
      await campaigns.stop();
      await rules.close();
      await bus.close();
      await redis.quit();
    },
  };
}

if (isMain(import.meta.url)) {
  await runMain('scheduler', async (config, logger) => {
    const unit = await runScheduler(config, logger);
    return {
      stop: () => unit.stop(),
      registry: unit.registry,
      health: () => {
        const h = unit.service.health();
        const c = unit.campaigns.health();
        return { ok: h.ok && c.ok, details: { ...h.details, campaigns: c } };
      },
    };
  });
}
