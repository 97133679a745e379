// Graceful shutdown: stop long-running units in reverse start order on SIGINT/SIGTERM.
import type { Logger } from 'pino';

export interface Service {
  readonly name: string;
  start(): Promise<void>;
  /** Finish in-flight work, commit, close. */
  stop(): Promise<void>;
  health(): { ok: boolean; details?: Record<string, unknown> };
}

export function onShutdown(logger: Logger, stopAll: () => Promise<void>, timeoutMs = 30_000): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown timed out, exiting');
      process.exit(1);
    }, timeoutMs);
    timer.unref();
    stopAll().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => handler('SIGINT'));
  process.once('SIGTERM', () => handler('SIGTERM'));
}

/** Starts services in order; stops the started ones in reverse. */
export async function startAll(services: Service[]): Promise<() => Promise<void>> {
  const started: Service[] = [];
  const stop = async () => {
    for (const s of started.reverse()) await s.stop();
  };
  try {
    for (const s of services) {
      await s.start();
      started.push(s);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return stop;
}
