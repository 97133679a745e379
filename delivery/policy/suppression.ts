// Suppression: hard bounces, complaints, invalid addresses/tokens and deleted users block
// every category, transactional included. A channel without an address is suppressed too,
// except push: the push provider also finds devices in its own registry by userId.
import { decideSuppression, type SuppressionState } from '../preferences/model.ts';
import { addressFor } from '../recipient.ts';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

export function createSuppressionStage(deps: {
  suppressions(userId: string, ctx: SendContext): Promise<SuppressionState>;
}): Stage {
  return {
    name: 'suppression',
    async run(ctx: SendContext) {
      const address = addressFor(ctx.recipient, ctx.channel);
      const decision = decideSuppression(
        await deps.suppressions(ctx.send.userId, ctx),
        ctx.channel,
        address,
      );
      if (!decision.allowed) return { kind: 'suppressed', reason: decision.reason };
      if (address === undefined && ctx.channel !== 'push')
        return { kind: 'suppressed', reason: `no_address:${ctx.channel}` };
      return CONTINUE;
    },
  };
}
