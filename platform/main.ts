// The common shape of a standalone process entry (`node --import tsx/esm <room>/.../main.ts`):
// load the config once, build the root logger, start the unit, stop it gracefully on
// SIGINT/SIGTERM (also when the signal arrives during start-up), and serve /metrics and
// /health (and their /openapi.json) on LC_METRICS_PORT when set.
import { pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { loadConfig, type Config } from './config.ts';
import { createLogger, type Logger } from './logger.ts';
import { serveOperational } from './http.ts';
import type { Registry } from './metrics.ts';
import { onShutdown } from './shutdown.ts';

/** A started long-running unit of a process. */
export interface RunningUnit {
  /** Graceful: stops accepting, waits for in-flight Kafka acknowledgements or commits, closes clients. */
  stop(): Promise<void>;
  health(): { ok: boolean; details?: Record<string, unknown> };
}

export interface StartedUnit {
  stop(): Promise<void>;
  registry?: Registry;
  health?(): { ok: boolean; details?: Record<string, unknown> };
}

/** True when the module with this `import.meta.url` is the script node was started with. */
export function isMain(importMetaUrl: string): boolean {
  return Boolean(process.argv[1]) && importMetaUrl === pathToFileURL(process.argv[1]!).href;
}

export async function runMain(
  name: string,
  start: (config: Readonly<Config>, logger: Logger) => Promise<StartedUnit>,
): Promise<void> {
  const config = loadConfig(undefined, {}, { serving: true });
  const logger = createLogger({ level: config.log.level, name });
  let server: FastifyInstance | null = null;
  const starting = start(config, logger);
  onShutdown(logger, async () => {
    const unit = await starting;
    await server?.close();
    await unit.stop();
  });
  try {
    const unit = await starting;
    if (config.metrics.port > 0 && unit.registry) {
      const health = unit.health ?? (() => ({ ok: true }));
      server = await serveOperational(
        { port: config.metrics.port, host: config.http.host },
        { metrics: unit.registry, health: () => health() },
      );
    }
    logger.info({ process: name }, 'running');
  } catch (err) {
    logger.fatal({ err }, `${name} failed to start`);
    process.exit(1);
  }
}
