// Holdout users are recorded (so uplift can be measured against them) but never sent to.
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

export function createHoldoutStage(): Stage {
  return {
    name: 'holdout',
    async run(ctx: SendContext) {
      return ctx.send.holdout ? { kind: 'holdout' } : CONTINUE;
    },
  };
}
