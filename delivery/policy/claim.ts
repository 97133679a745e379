// First stage: claim the sendId for this channel. A send already handled is skipped (its
// stored outcome is re-emitted, in case the first emission was lost); a send parked in the
// delay queue is skipped unless this pass is that queue entry; a send held by a live
// worker is waited for until its lease runs out.
import type { Logger } from 'pino';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';
import type { ClaimStore } from './claims.ts';

export interface ClaimStageDeps {
  claims: ClaimStore;
  owner: string;
  leaseMs: number;
  logger: Logger;
  sleep?: (ms: number) => Promise<void>;
}

export function createClaimStage(deps: ClaimStageDeps): Stage {
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  return {
    name: 'claim',
    async run(ctx: SendContext) {
      const ref = { userId: ctx.send.userId, sendId: ctx.send.sendId, channel: ctx.channel };
      for (;;) {
        const r = await deps.claims.claim(ref, deps.owner, Date.now(), deps.leaseMs, ctx.resumeGen);
        switch (r.kind) {
          case 'done':
            return {
              kind: 'skip',
              reason: `already ${r.status}`,
              reemit: { status: r.status, reason: r.reason, provider: r.provider },
            };
          case 'waiting':
            return { kind: 'skip', reason: `parked in the delay queue (generation ${r.gen})` };
          case 'busy':
            // Another worker holds it (a rebalance just moved the partition, or it died):
            // it either finishes the send or its lease runs out and we take over.
            await sleep(Math.min(Math.max(r.leaseUntil - Date.now(), 50), 1000));
            continue;
          default:
            if (r.kind === 'reclaimed' && r.wasSending) {
              ctx.takeover = true;
              deps.logger.warn(
                { sendId: ctx.send.sendId, channel: ctx.channel },
                'taking over a send whose provider call may have completed',
              );
            } else if (r.kind === 'resumed' && r.wasSending) {
              ctx.unsettled = true;
              if (r.sendingAt) ctx.unsettledProvider = r.sendingAt;
              deps.logger.info(
                { sendId: ctx.send.sendId, channel: ctx.channel },
                'retrying a send whose last provider call ended without an answer',
              );
            }
            ctx.attempts = r.attempts;
            ctx.gen = r.gen;
            ctx.fresh = r.kind === 'new';
            return CONTINUE;
        }
      }
    },
  };
}
