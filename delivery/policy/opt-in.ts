// Confirmation emails of double opt-in: sent only while their request is pending (a reminder
// for a request confirmed, withdrawn or expired meanwhile is suppressed), and a reminder waits
// in the durable delay queue until it is due, as a send in quiet hours waits for their end.
import { optInData, statusAt } from '../optin/model.ts';
import type { OptInStore } from '../optin/store.ts';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

export function createOptInStage(deps: { optIns: Pick<OptInStore, 'get'> }): Stage {
  return {
    name: 'opt_in',
    async run(ctx: SendContext) {
      const optIn = optInData(ctx.send);
      if (!optIn) return CONTINUE;
      const request = await deps.optIns.get(ctx.send.userId, optIn.requestId);
      const status = request ? statusAt(request, ctx.now) : 'unknown';
      if (status !== 'pending') return { kind: 'suppressed', reason: `opt_in_${status}` };
      if (ctx.now < optIn.notBefore)
        return {
          kind: 'defer',
          until: optIn.notBefore,
          retry: false,
          reason: `opt_in_reminder until ${new Date(optIn.notBefore).toISOString()}`,
        };
      return CONTINUE;
    },
  };
}
