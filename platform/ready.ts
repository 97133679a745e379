// Waiting for a dependency at start: a process started before Kafka or ClickHouse (a deploy
// that brings everything up at once, a broker restarting) waits for it with backoff instead
// of exiting, and says so, with the address and how long it has waited. An error that waiting
// cannot mend (a refused password, a bad database name) stops the start at once.
import type { Logger } from 'pino';
import { errorMessage } from './errors.ts';

/** The backoff between attempts: doubling from `initialMs` up to `maxMs`. */
export interface StartRetry {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_START_RETRY: StartRetry = { initialMs: 500, maxMs: 30_000 };

export interface WhenReadyOptions<T> {
  /** What is waited for, as the log names it ("Kafka", "ClickHouse"). */
  what: string;
  /** Where it is expected (an address), logged with every attempt. */
  at: string;
  /** One attempt: resolves once the dependency answers. */
  attempt: () => Promise<T>;
  /** True for errors worth waiting out (the dependency is not reachable yet). */
  waitable: (err: unknown) => boolean;
  logger: Logger;
  retry?: StartRetry;
  /** What the process does meanwhile, appended to the waiting message. */
  meanwhile?: string;
}

export async function whenReady<T>(o: WhenReadyOptions<T>): Promise<T> {
  const retry = o.retry ?? DEFAULT_START_RETRY;
  const since = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      const value = await o.attempt();
      if (attempt > 1)
        o.logger.info(
          { at: o.at, attempts: attempt, waitedMs: Date.now() - since },
          `${o.what} answers: starting`,
        );
      return value;
    } catch (err) {
      if (!o.waitable(err)) throw err;
      const delay = Math.min(retry.maxMs, retry.initialMs * 2 ** Math.min(attempt - 1, 16));
      o.logger[attempt === 1 || attempt % 10 === 0 ? 'error' : 'warn'](
        {
          at: o.at,
          attempt,
          waitedMs: Date.now() - since,
          nextAttemptInMs: delay,
          err: errorMessage(err),
        },
        `${o.what} does not answer: waiting for it${o.meanwhile ? ` ${o.meanwhile}` : ''}`,
      );
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EPIPE',
]);
const UNREACHABLE_KAFKA = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSBrokerNotFound',
  'KafkaJSRequestTimeoutError',
  'KafkaJSLeaderNotAvailable',
]);

/**
 * True when an error (or an error it wraps: `cause`, kafkajs's `originalError`, the last of
 * a retry chain) says the service could not be reached or dropped the connection, not that
 * it refused what was asked.
 */
export function isUnreachable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  const e = err as { name?: unknown; code?: unknown; cause?: unknown; originalError?: unknown };
  if (typeof e.code === 'string' && UNREACHABLE_CODES.has(e.code)) return true;
  if (typeof e.name === 'string' && UNREACHABLE_KAFKA.has(e.name)) return true;
  if (err instanceof Error && /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT)\b/.test(err.message))
    return true;
  return isUnreachable(e.originalError, depth + 1) || isUnreachable(e.cause, depth + 1);
}
