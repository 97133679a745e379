// The distributed engine process: Kafka in and out, state and timers in Redis, rules
// hot-reloaded from the rules folder, with the rules of the live campaigns (campaigns topic). `runEngine` is what `lifecycle run engine` calls;
// run this file directly (`node --import tsx/esm engine/runtime/main.ts`) for a bare
// engine process configured from the environment.
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../../platform/config.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { openRedis } from '../../platform/redis.ts';
import { createMetricsRegistry, type Registry } from '../../platform/metrics.ts';
import { isMain, runMain } from '../../platform/main.ts';
import { isUnreachable, whenReady } from '../../platform/ready.ts';
import { LifecycleError } from '../../platform/errors.ts';
import { loadMessageTypes } from '../../platform/message-types.ts';
import { openRuleSet, type RuleSet } from '../../rules/index.ts';
import { createEngineService, type EngineService } from './engine-service.ts';
import { createRedisStateStore } from './redis-state.ts';
import { createRedisTimerStore } from './timers.ts';
import { createRedisContactIndex } from './contacts.ts';
import { wireCore } from './wiring.ts';
import { topics } from '../../platform/contracts.ts';
import { createCampaignRuleSet } from '../campaigns/compile.ts';
import { campaignViewFreshness, createCampaignTable } from '../campaigns/table.ts';

export interface RunningEngine {
  service: EngineService;
  registry: Registry;
  /** Graceful: finish the in-flight batch, commit, stop timers and the rule watcher, close clients. */
  stop(): Promise<void>;
}

export async function runEngine(
  config: Readonly<Config>,
  logger: Logger,
  opts: { registry?: Registry } = {},
): Promise<RunningEngine> {
  const log = logger.child({ component: 'engine' });
  // Template names are checked when the templates folder is deployed beside the engine.
  const ruleOpts = existsSync(config.delivery.templatesDir)
    ? { templatesDir: config.delivery.templatesDir }
    : {};
  // The service exists only after the set is loaded; its version label follows each swap.
  let service: EngineService | null = null;
  // The rule files with the live campaigns' rules: rebuilt when either changes.
  let ruleSet: { current(): RuleSet } | null = null;
  const messageTypes = loadMessageTypes(config.delivery.messageTypesFile);
  const rules = await openRuleSet(
    config.engine.rulesDir,
    { ...ruleOpts, messageTypes, logger: log },
    () => {
      if (ruleSet) service?.setRuleSetVersion(ruleSet.current().version);
    },
  );
  const registry = opts.registry ?? createMetricsRegistry({ process: 'engine' });
  // Refuses a Redis that could lose acknowledged state (see platform/redis.ts) before anything starts.
  const redis = await openRedis(config, logger).catch(async (err: unknown) => {
    await rules.close();
    throw err;
  });
  const bus = KafkaBus.fromConfig(config, logger);
  const t = topics(config.kafka.topicPrefix);
  const eventsTopic = t.events;
  // Read to its end before the first event: a campaign's members must find its rule.
  const campaigns = createCampaignTable(
    { topics: t },
    { bus, publisher: bus.publisher(), logger, registry },
  );
  try {
    // A broker away at start (a deploy bringing everything up at once, a restart) is waited
    // for, as `lifecycle run` waits for Kafka, instead of ending the process.
    await whenReady({
      what: 'Kafka (campaigns topic)',
      at: t.campaigns,
      logger,
      meanwhile: 'before applying any event',
      waitable: (err) => isUnreachable(err) || (err instanceof LifecycleError && err.retriable),
      attempt: async () => {
        try {
          await campaigns.start();
        } catch (err) {
          await campaigns.stop().catch(() => undefined);
          throw err;
        }
      },
    });
  } catch (err) {
    await campaigns.stop().catch(() => undefined);
    await rules.close();
    await bus.close();
    redis.redis.disconnect();
    throw err;
  }
  ruleSet = createCampaignRuleSet({
    base: rules.current,
    campaigns,
    logger: log,
    onSwap: (next) => service?.setRuleSetVersion(next.version),
  });
  const current = ruleSet.current;
  const wiring = wireCore(current);
  service = createEngineService(
    {
      topicPrefix: config.kafka.topicPrefix,
      groupId: config.engine.groupId,
      timerPollMs: config.engine.timerPollMs,
      partitions: config.kafka.partitions,
    },
    {
      bus,
      state: createRedisStateStore(redis, { eventsTopic }),
      timers: createRedisTimerStore(redis, { eventsTopic }),
      contacts: createRedisContactIndex(redis, {
        eventsTopic,
        partitions: config.kafka.partitions,
      }),
      core: wiring.core,
      codec: wiring.codec,
      evaluatedRules: wiring.evaluatedRules,
      contactTerms: wiring.contactTerms,
      durable: redis.durability.durable,
      prepare: campaignViewFreshness(campaigns),
      logger,
      registry,
      ruleSetVersion: current().version,
    },
  );
  try {
    await service.start();
  } catch (err) {
    await campaigns.stop();
    await rules.close();
    await bus.close();
    redis.redis.disconnect();
    throw err;
  }
  return {
    service,
    registry,
    async stop() {
      await service.stop();
      await campaigns.stop();
      await rules.close();
      await bus.close();
      await redis.redis.quit();
    },
  };
}

if (isMain(import.meta.url)) {
  await runMain('engine', async (config, logger) => {
    const unit = await runEngine(config, logger);
    return {
      stop: () => unit.stop(),
      registry: unit.registry,
      health: () => unit.service.health(),
    };
  });
}
