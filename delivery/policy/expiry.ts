// A send past its `expiresAt` is stale ("your cart is waiting" a week later): suppressed, not sent.
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

export function createExpiryStage(): Stage {
  return {
    name: 'expiry',
    async run(ctx: SendContext) {
      const { expiresAt } = ctx.send;
      if (expiresAt !== null && ctx.now >= expiresAt)
        return { kind: 'suppressed', reason: `expired at ${new Date(expiresAt).toISOString()}` };
      return CONTINUE;
    },
  };
}
