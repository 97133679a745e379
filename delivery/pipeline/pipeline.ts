// The policy chain for one send on one channel:
//   claim -> expiry -> holdout -> suppression -> consent -> frequency cap -> quiet hours
//   -> render -> provider
// Each stage decides; the first decision other than `continue` ends the chain and is applied
// here: claims move to their terminal or parked state, parked sends go to the durable delay
// queue, cap slots of unsent sends are freed, and the outcomes are returned for publishing.
import type { Logger } from 'pino';
import type {
  Channel,
  DeliveryOutcome,
  DeliveryStatus,
  MessageRecord,
  SendCommand,
} from '../../platform/contracts.ts';
import { Counter, type Registry } from '../../platform/metrics.ts';
import type { ClaimStore } from '../policy/claims.ts';
import type { CapStore } from '../policy/caps-store.ts';
import type { DelayQueue } from './delay-queue.ts';
import type { SentIndex } from '../sent-index.ts';
import { resolveRecipient } from '../recipient.ts';
import { messageRecord } from './message-log.ts';
import type { SendContext, Stage, StageResult } from '../stage.ts';

export interface PipelineDeps {
  stages: Stage[];
  claims: ClaimStore;
  caps: CapStore;
  delayQueue: DelayQueue;
  /** Remembers where a sent message went, so bounce webhooks find the user and send. */
  sentIndex: SentIndex;
  owner: string;
  logger: Logger;
  metrics?: Registry;
  defaults: { timezone: string; locale: string };
  /** The clock of policy decisions (quiet hours, caps, expiry); tests move it forward. */
  now?: () => number;
}

export interface ProcessResult {
  outcomes: DeliveryOutcome[];
  /**
   * The message log's record of what was sent, when this pass recorded the send `sent` (the
   * worker publishes it with the outcomes); null otherwise, and for sends never rendered.
   */
  message: MessageRecord | null;
  /** Set when the send command goes to the DLQ, with the reason. */
  dlq: string | null;
  /** The decision that ended the chain. */
  result: StageResult;
}

export interface SendPipeline {
  process(
    send: SendCommand,
    channel: Channel,
    resumeGen: number | null,
    now?: number,
  ): Promise<ProcessResult>;
}

export function outcome(
  send: SendCommand,
  channel: Channel | null,
  status: DeliveryStatus,
  fields: {
    reason?: string | null;
    provider?: string | null;
    attempt?: number;
    idSuffix?: string;
    ts?: number;
  },
): DeliveryOutcome {
  return {
    id: `${send.sendId}:${channel ?? '-'}:${status}${fields.idSuffix ?? ''}`,
    sendId: send.sendId,
    ruleId: send.ruleId,
    userId: send.userId,
    channel,
    status,
    reason: fields.reason ?? null,
    provider: fields.provider ?? null,
    attempt: fields.attempt ?? 0,
    ts: fields.ts ?? Date.now(),
    variant: send.variant,
    holdout: send.holdout,
  };
}

export function createSendPipeline(deps: PipelineDeps): SendPipeline {
  const stageCounter = deps.metrics
    ? new Counter({
        name: 'lifecycle_delivery_stage_total',
        help: 'Policy-chain decisions by stage and result',
        labelNames: ['stage', 'result'],
        registers: [deps.metrics],
      })
    : null;
  const outcomeCounter = deps.metrics
    ? new Counter({
        name: 'lifecycle_delivery_outcomes_total',
        help: 'Delivery outcomes by channel and status',
        labelNames: ['channel', 'status'],
        registers: [deps.metrics],
      })
    : null;

  return {
    async process(send, channel, resumeGen, now = (deps.now ?? Date.now)()) {
      const ctx: SendContext = {
        send,
        channel,
        recipient: resolveRecipient(send, deps.defaults),
        now,
        resumeGen,
        gen: 0,
        attempts: 0,
        capHeld: false,
        fresh: false,
        takeover: false,
        unsettled: false,
        sideOutcomes: [],
        trace: [],
      };
      let result: StageResult = { kind: 'continue' };
      for (const stage of deps.stages) {
        result = await stage.run(ctx);
        ctx.trace.push({ stage: stage.name, result: result.kind });
        stageCounter?.inc({ stage: stage.name, result: result.kind });
        if (result.kind !== 'continue') break;
      }
      const ref = { userId: send.userId, sendId: send.sendId, channel };
      const out: DeliveryOutcome[] = [];
      const done = (status: DeliveryStatus, o: Parameters<typeof outcome>[3] = {}) =>
        out.push(outcome(send, channel, status, { attempt: ctx.attempts, ...o }));
      if (ctx.fresh) done('queued', { ts: now });
      let dlq: string | null = null;
      let message: MessageRecord | null = null;
      const finish = async (
        status: 'sent' | 'suppressed' | 'holdout' | 'failed',
        reason: string | null,
        provider: string | null,
      ) => {
        const ok = await deps.claims.finish(
          ref,
          deps.owner,
          status,
          reason,
          provider,
          ctx.attempts,
        );
        if (!ok)
          deps.logger.warn(
            { sendId: send.sendId, channel },
            'claim was taken over before the send finished',
          );
        if (ctx.capHeld && status !== 'sent')
          await deps.caps.release(send.userId, channel, send.sendId);
        return ok;
      };
      switch (result.kind) {
        case 'continue':
          throw new Error('the policy chain ended without a decision');
        case 'skip':
          if (result.reemit)
            done(result.reemit.status, {
              reason: result.reemit.reason,
              provider: result.reemit.provider,
            });
          break;
        case 'holdout':
          if (await finish('holdout', 'holdout group', null))
            done('holdout', { reason: 'holdout group' });
          break;
        case 'suppressed':
          if (await finish('suppressed', result.reason, null))
            done('suppressed', { reason: result.reason });
          break;
        case 'failed':
          if (await finish('failed', result.reason, null)) {
            done(result.bounced ? 'bounced' : 'failed', { reason: result.reason });
            if (result.dlq) dlq = result.reason;
          }
          break;
        case 'sent': {
          // One round trip (auto-pipelined): the time between the provider's accept and the
          // `sent` record is the only window where a crash can duplicate a message.
          const [ok] = await Promise.all([
            finish('sent', null, result.provider),
            deps.sentIndex.remember(send, channel, ctx.recipient.email ?? null),
          ]);
          if (ok) {
            done('sent', {
              provider: result.provider,
              reason: result.reconciled
                ? 'reconciled: the provider had accepted it on an earlier call'
                : null,
            });
            const logged = messageRecord(ctx, out[out.length - 1]!.ts);
            if (logged) {
              message = logged.record;
              if (logged.omitted.length > 0)
                deps.logger.warn(
                  { sendId: send.sendId, channel, omitted: logged.omitted },
                  'message log record left parts out to stay under the record size limit; the message cannot be resent',
                );
            }
          }
          break;
        }
        case 'defer': {
          const gen = ctx.gen + 1;
          // Queue first, then the claim: a crash in between leaves an entry that resumes a
          // send still `claimed` by a dead worker, which the lease hands over; never a parked
          // claim without its entry.
          await deps.delayQueue.add({
            send,
            channel,
            gen,
            reason: result.reason,
            dueAt: result.until,
          });
          if (
            await deps.claims.park(
              ref,
              deps.owner,
              result.retry ? 'retrying' : 'deferred',
              gen,
              ctx.attempts,
              result.unsettledProvider ?? result.unsettled === true,
            )
          ) {
            done('deferred', { reason: result.reason, idSuffix: `:${gen}` });
          }
          break;
        }
      }
      for (const o of out) outcomeCounter?.inc({ channel, status: o.status });
      deps.logger.debug({ sendId: send.sendId, channel, trace: ctx.trace }, 'send decided');
      return { outcomes: [...ctx.sideOutcomes, ...out], dlq, result, message };
    },
  };
}
