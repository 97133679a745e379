// Provider stage: the channel's providers in priority order, each behind its own circuit
// breaker. The first that accepts wins; a retriable failure fails over to the next; a
// permanent one (invalid address, hard bounce) ends the send and suppresses the address.
// When every provider failed or is open, the send is parked for a retry with exponential
// backoff and jitter; after the last attempt it fails into the DLQ with the last error.
// A send taken over from a worker that died during a provider call, or retried after any
// failed call (one that ended without an answer above all: a reset after the relay accepted
// the data looks like any other failure), is first reconciled: every provider of the channel that can
// be asked (`accepted`) is asked whether it already has the message; if one has, the send is
// recorded as sent without sending it again.
//
// Every provider call has a deadline (the provider's `deadlineMs`, else the stage's): a call
// that outlives it is an ambiguous failure, like a connection dropped after the data. The
// provider may have the message, so the stage neither fails over to the next provider in the
// same pass nor sends again blindly: the send is parked for a retry that asks first. A provider
// that cannot be asked (SMS, push) is called again first, with the same idempotency key (the
// sendId), so one that has the message answers with it instead of sending it twice; the
// channel's other providers are tried only after it answered (a refusal, an error status, a
// refused connection), never while it stays silent or its breaker is open.
import type { Logger } from 'pino';
import type { Channel } from '../../platform/contracts.ts';
import { errorMessage } from '../../platform/errors.ts';
import type { OutgoingMessage, Provider, ProviderResult } from '../provider.ts';
import type { Suppression } from '../preferences/model.ts';
import { backoffMs, createBreaker, type Breaker } from './breaker.ts';
import { addressFor } from '../recipient.ts';
import type { SendContext, Stage, StageResult } from '../stage.ts';

export interface ProviderStageDeps {
  providers: ReadonlyMap<Channel, readonly Provider[]>;
  breakers: BreakerRegistry;
  /** Called right before the first provider call: from here a crash may duplicate the message. */
  beforeSend(ctx: SendContext): Promise<boolean>;
  suppress(userId: string, channel: Channel, s: Suppression): Promise<void>;
  logger: Logger;
  random?: () => number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface ProviderStageConfig {
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Tries of a reconciliation lookup that cannot tell, a second apart, before sending anyway (default 3). */
  reconcileTries?: number;
  /** Deadline of a call to a provider that declares none (default 60 s). */
  providerDeadlineMs?: number;
}

export const DEFAULT_PROVIDER_DEADLINE_MS = 60_000;

/**
 * The provider's answer, or an ambiguous retriable failure once `ms` pass without one. The
 * call itself cannot be cancelled; it is left to settle (or not) on its own.
 */
export async function callWithDeadline(
  provider: Provider,
  message: OutgoingMessage,
  ms: number,
): Promise<ProviderResult> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<ProviderResult>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          status: 'retriable',
          ambiguous: true,
          error: `no answer from ${provider.name} within ${ms} ms`,
        }),
      ms,
    );
  });
  const call = provider.send(message).catch((err: unknown): ProviderResult => ({
    // Providers return expected failures as values; anything thrown is treated as transient.
    status: 'retriable',
    error: errorMessage(err),
  }));
  try {
    return await Promise.race([call, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export interface BreakerRegistry {
  get(provider: string): Breaker;
  states(now: number): Record<string, string>;
}

export function createBreakerRegistry(opts: {
  threshold: number;
  cooldownMs: number;
}): BreakerRegistry {
  const map = new Map<string, Breaker>();
  return {
    get(name) {
      let b = map.get(name);
      if (!b) map.set(name, (b = createBreaker(opts)));
      return b;
    },
    states: (now) => Object.fromEntries([...map].map(([n, b]) => [n, b.state(now)])),
  };
}

export function createProviderStage(config: ProviderStageConfig, deps: ProviderStageDeps): Stage {
  const random = deps.random ?? Math.random;
  const clock = deps.now ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const tries = config.reconcileTries ?? 3;
  const defaultDeadline = config.providerDeadlineMs ?? DEFAULT_PROVIDER_DEADLINE_MS;

  /** The provider that already has the message, or null (none has it, or none can be asked). */
  async function reconcile(
    ctx: SendContext,
    providers: readonly Provider[],
  ): Promise<Provider | null> {
    const message = ctx.message!;
    for (const provider of providers) {
      if (!provider.accepted) continue;
      for (let attempt = 1; ; attempt++) {
        try {
          if (await provider.accepted(message)) return provider;
          break;
        } catch (err) {
          // Cannot tell: ask again; after the last try, sending again (a possible duplicate with
          // the same Message-ID) is better than never sending.
          if (attempt >= tries) {
            deps.logger.warn(
              { provider: provider.name, sendId: ctx.send.sendId, err: errorMessage(err) },
              'could not ask the provider whether it has the message; sending again',
            );
            break;
          }
          await sleep(1000);
        }
      }
    }
    return null;
  }

  return {
    name: 'provider',
    async run(ctx: SendContext): Promise<StageResult> {
      const message = ctx.message;
      if (!message) return { kind: 'failed', reason: 'nothing rendered', dlq: true };
      const providers = deps.providers.get(ctx.channel) ?? [];
      if (providers.length === 0)
        return {
          kind: 'failed',
          reason: `no provider configured for channel ${ctx.channel}`,
          dlq: true,
        };
      if (!(await deps.beforeSend(ctx)))
        return { kind: 'skip', reason: 'claim taken over by another worker' };
      if (ctx.takeover || ctx.unsettled || ctx.attempts > 0) {
        const had = await reconcile(ctx, providers);
        if (had) {
          deps.logger.info(
            { provider: had.name, sendId: ctx.send.sendId, channel: ctx.channel },
            ctx.takeover
              ? 'the provider already had the message of a taken-over send; recorded as sent, not sent again'
              : 'the provider already had the message of an earlier failed call; recorded as sent, not sent again',
          );
          return { kind: 'sent', provider: had.name, reconciled: true };
        }
      }

      // The provider of an unanswered call goes first, and nothing after it until it answers.
      const pending = ctx.unsettled
        ? providers.find((p) => p.name === ctx.unsettledProvider)
        : undefined;
      const order = pending ? [pending, ...providers.filter((p) => p !== pending)] : providers;
      const errors: string[] = [];
      let called = false;
      let retryAfterMs = 0;
      let reopensAt = Infinity;
      let unsettled: string | null = null;
      for (const provider of order) {
        const breaker = deps.breakers.get(provider.name);
        const now = clock();
        if (!breaker.allow(now)) {
          errors.push(`${provider.name}: circuit open`);
          reopensAt = Math.min(reopensAt, breaker.reopensAt());
          if (provider === pending) {
            // It may still have the message: wait for its trial rather than ask another.
            unsettled = provider.name;
            break;
          }
          continue;
        }
        called = true;
        const result = await callWithDeadline(
          provider,
          message,
          provider.deadlineMs ?? defaultDeadline,
        );
        if (result.status === 'sent') {
          breaker.success();
          return result.providerMessageId === undefined
            ? { kind: 'sent', provider: provider.name }
            : {
                kind: 'sent',
                provider: provider.name,
                providerMessageId: result.providerMessageId,
              };
        }
        if (result.status === 'permanent') {
          breaker.success();
          ctx.attempts++;
          // A dead push token is dropped from the device registry by the push provider; the
          // user's other devices stay reachable, so the channel is not suppressed.
          if (result.suppress && result.suppress !== 'invalid_token') {
            const address = addressFor(ctx.recipient, ctx.channel);
            await deps.suppress(ctx.send.userId, ctx.channel, {
              reason: result.suppress,
              at: clock(),
              ...(address ? { address } : {}),
            });
          }
          return {
            kind: 'failed',
            reason: `${provider.name}: ${result.suppress ?? 'permanent'}: ${result.error}`,
            dlq: false,
            bounced: result.suppress === 'hard_bounce',
          };
        }
        breaker.failure(clock());
        errors.push(`${provider.name}: ${result.error}`);
        retryAfterMs = Math.max(retryAfterMs, result.retryAfterMs ?? 0);
        if (result.ambiguous) {
          // The message may be at this provider: another one now could make it two.
          unsettled = provider.name;
          deps.logger.warn(
            { provider: provider.name, sendId: ctx.send.sendId, error: result.error },
            'provider call ended without an answer; the retry asks the provider first',
          );
          break;
        }
        deps.logger.warn(
          { provider: provider.name, sendId: ctx.send.sendId, error: result.error },
          'provider failed; trying the next one',
        );
      }
      const lastError = errors.join('; ');
      if (called) ctx.attempts++;
      if (ctx.attempts >= config.maxAttempts) {
        if (unsettled)
          deps.logger.warn(
            { sendId: ctx.send.sendId, channel: ctx.channel },
            'giving up on a send whose last provider call ended without an answer: the provider may have delivered it',
          );
        return {
          kind: 'failed',
          reason: `gave up after ${ctx.attempts} attempts: ${lastError}`,
          dlq: true,
        };
      }
      const now = clock();
      let delay = called
        ? backoffMs(ctx.attempts, config.retryBaseMs, config.retryMaxMs, random)
        : 0;
      delay = Math.max(delay, retryAfterMs);
      // Every provider open: come back when the first breaker allows a trial, spread a little.
      if (Number.isFinite(reopensAt))
        delay = Math.max(
          delay,
          reopensAt - now + Math.round(random() * Math.min(1000, config.retryBaseMs)),
        );
      delay = Math.max(delay, 10);
      return {
        kind: 'defer',
        until: now + delay,
        retry: true,
        error: lastError,
        reason: `retry ${ctx.attempts + 1}/${config.maxAttempts} in ${delay} ms: ${lastError}`,
        ...(unsettled ? { unsettled: true, unsettledProvider: unsettled } : {}),
      };
    },
  };
}
