// Frequency caps across rules, per channel per rolling day and week. Transactional sends
// are exempt. When a channel is full, the higher-priority send wins: it takes the slot of a
// lower-priority send that is still waiting (quiet hours, retry), which is then suppressed
// with the reason; otherwise the new send is the one suppressed.
import { TRANSACTIONAL } from '../preferences/model.ts';
import { CONTINUE, type SendContext, type Stage } from '../pipeline/types.ts';
import type { CapHolder, CapLimits, CapStore } from './caps-store.ts';

export interface CapsStageDeps {
  caps: CapStore;
  /** A parked lower-priority send lost its slot to `winner`: suppress it and record why. */
  onPreempted(victim: CapHolder, ctx: SendContext): Promise<void>;
}

export function createCapsStage(limits: CapLimits, deps: CapsStageDeps): Stage {
  const unlimited = limits.perDay === 0 && limits.perWeek === 0;
  return {
    name: 'frequency_cap',
    async run(ctx: SendContext) {
      if (ctx.send.category === TRANSACTIONAL || unlimited) return CONTINUE;
      const { send } = ctx;
      const r = await deps.caps.reserve(
        send.userId,
        ctx.channel,
        { sendId: send.sendId, ruleId: send.ruleId, priority: send.priority, variant: send.variant, category: send.category },
        ctx.now,
        limits,
      );
      if (r.kind === 'capped') return { kind: 'suppressed', reason: `frequency_cap:${ctx.channel}:${r.window}` };
      ctx.capHeld = true;
      if (r.kind === 'preempted') await deps.onPreempted(r.victim, ctx);
      return CONTINUE;
    },
  };
}
