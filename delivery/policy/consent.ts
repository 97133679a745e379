// Consent and preferences: category x channel, global unsubscribe, explicit marketing opt-in;
// then, within the category, the user's switches of the send's message type on the channel.
import type { MessageTypes } from '../../platform/message-types.ts';
import { decideConsent, decideMessageType, type UserPreferences } from '../preferences/model.ts';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

export function createConsentStage(deps: {
  preferences(userId: string, ctx: SendContext): Promise<UserPreferences>;
  /** The declared message types (LC_MESSAGE_TYPES_FILE); a send of a type not declared is decided by its category. */
  messageTypes: MessageTypes;
}): Stage {
  return {
    name: 'consent',
    async run(ctx: SendContext) {
      const type =
        ctx.send.messageType === undefined
          ? undefined
          : deps.messageTypes.get(ctx.send.messageType);
      if (ctx.send.category === 'transactional' && !type?.switchable) return CONTINUE;
      const prefs = await deps.preferences(ctx.send.userId, ctx);
      const decision =
        ctx.send.category === 'transactional'
          ? { allowed: true as const }
          : decideConsent(prefs, ctx.send.category, ctx.channel);
      if (!decision.allowed) return { kind: 'suppressed', reason: decision.reason };
      const typed = decideMessageType(prefs, type, ctx.channel);
      return typed.allowed ? CONTINUE : { kind: 'suppressed', reason: typed.reason };
    },
  };
}
