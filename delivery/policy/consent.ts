// Consent and preferences: category x channel, global unsubscribe, explicit marketing opt-in.
import { decideConsent, type UserPreferences } from '../preferences/model.ts';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

export function createConsentStage(deps: {
  preferences(userId: string, ctx: SendContext): Promise<UserPreferences>;
}): Stage {
  return {
    name: 'consent',
    async run(ctx: SendContext) {
      if (ctx.send.category === 'transactional') return CONTINUE;
      const decision = decideConsent(
        await deps.preferences(ctx.send.userId, ctx),
        ctx.send.category,
        ctx.channel,
      );
      return decision.allowed ? CONTINUE : { kind: 'suppressed', reason: decision.reason };
    },
  };
}
