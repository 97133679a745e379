// The distributed engine process: Kafka in and out, state and timers in Redis, rules
// hot-reloaded from the rules folder. `runEngine` is what `lifecycle run engine` calls;
// run this file directly (`node --import tsx/esm engine/runtime/main.ts`) for a bare
// engine process configured from the environment.
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../../platform/config.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { createRedis } from '../../platform/redis.ts';
import { createMetricsRegistry, type Registry } from '../../platform/metrics.ts';
import { isMain, runMain } from '../../platform/main.ts';
import { LifecycleError } from '../../platform/errors.ts';
import { formatRuleError, loadRuleSet, watchRuleSet, type RuleSet } from '../../rules/index.ts';
import { createEngineService, type EngineService } from './engine-service.ts';
import { createRedisStateStore } from './redis-state.ts';
import { createRedisTimerStore } from './timers.ts';
import { wireCore } from './wiring.ts';
import { topics } from '../../platform/contracts.ts';

export interface RunningEngine {
  service: EngineService;
  registry: Registry;
  /** Graceful: finish the in-flight batch, commit, stop timers and the rule watcher, close clients. */
  stop(): Promise<void>;
}

export async function runEngine(config: Readonly<Config>, logger: Logger, opts: { registry?: Registry } = {}): Promise<RunningEngine> {
  const log = logger.child({ component: 'engine' });
  // Template names are checked when the templates folder is deployed beside the engine.
  const ruleOpts = existsSync(config.delivery.templatesDir) ? { templatesDir: config.delivery.templatesDir } : {};
  const loaded = await loadRuleSet(config.engine.rulesDir, ruleOpts);
  if (!loaded.ok) {
    throw new LifecycleError('LC_ERR_RULES_INVALID', `rule set in ${config.engine.rulesDir} is invalid:\n${loaded.errors.map(formatRuleError).join('\n')}`);
  }
  // One assignment swaps the whole set; the core reads it once per event.
  let current: RuleSet = loaded.ruleSet;
  const registry = opts.registry ?? createMetricsRegistry();
  const bus = KafkaBus.fromConfig(config, logger);
  const redis = createRedis(config.redis, logger);
  const eventsTopic = topics(config.kafka.topicPrefix).events;
  const wiring = wireCore(() => current);
  const service = createEngineService(
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
      core: wiring.core,
      codec: wiring.codec,
      evaluatedRules: wiring.evaluatedRules,
      logger,
      registry,
      ruleSetVersion: current.version,
    },
  );
  const watcher = watchRuleSet(
    config.engine.rulesDir,
    { ...ruleOpts, currentVersion: current.version, logger: log },
    {
      onSwap(ruleSet) {
        current = ruleSet;
        service.setRuleSetVersion(ruleSet.version);
      },
      onReject(errors) {
        for (const e of errors.slice(0, 20)) log.error({ file: e.file, path: e.path, ruleSetVersion: current.version }, `rule file rejected: ${e.message}`);
      },
    },
  );
  try {
    await service.start();
  } catch (err) {
    await watcher.close();
    await bus.close();
    redis.redis.disconnect();
    throw err;
  }
  return {
    service,
    registry,
    async stop() {
      await service.stop();
      await watcher.close();
      await bus.close();
      await redis.redis.quit();
    },
  };
}

if (isMain(import.meta.url)) {
  await runMain('engine', async (config, logger) => {
    const unit = await runEngine(config, logger);
    return { stop: () => unit.stop(), registry: unit.registry, health: () => unit.service.health() };
  });
}
