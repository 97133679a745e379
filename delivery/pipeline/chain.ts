// Assembles the policy chain in its fixed order from the stores and providers.
import type { Logger } from 'pino';
import type { Channel } from '../../platform/contracts.ts';
import type { MessageTypes } from '../../platform/message-types.ts';
import { createClaimStage } from '../policy/claim.ts';
import type { ClaimStore } from '../policy/claims.ts';
import { createExpiryStage } from '../policy/expiry.ts';
import { createOptInStage } from '../policy/opt-in.ts';
import type { OptInStore } from '../optin/store.ts';
import { createHoldoutStage } from '../policy/holdout.ts';
import { createSuppressionStage } from '../policy/suppression.ts';
import { createConsentStage } from '../policy/consent.ts';
import { createCapsStage, resolveChannelCaps } from '../policy/caps.ts';
import type { CapStore } from '../policy/caps-store.ts';
import { createQuietHoursStage } from '../policy/quiet-hours.ts';
import type { PreferencesStore } from '../preferences/store.ts';
import type { Provider } from '../provider.ts';
import type { TrackingLinks } from '../links.ts';
import type { Shortener } from '../tracking/short-links.ts';
import { outcome } from './pipeline.ts';
import { createProviderStage, type BreakerRegistry } from './provider-stage.ts';
import { createRenderStage, type Renderer } from './render.ts';
import { createSizeLimitStage } from './size-limit.ts';
import type { SendContext, Stage } from '../stage.ts';
import type { SuppressionState, UserPreferences } from '../preferences/model.ts';

export interface ChainConfig {
  leaseMs: number;
  /** LC_CAP_PER_DAY/WEEK: the caps of channels capped by default that LC_CAPS does not name. */
  capPerDay: number;
  capPerWeek: number;
  /** LC_CAPS: per-channel caps. */
  channelCaps: string;
  quietHours: string;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  publicBaseUrl: string;
  /** LC_MAX_MESSAGE_BYTES: the largest rendered message handed to a provider. */
  maxMessageBytes: number;
}

export interface ChainDeps {
  owner: string;
  claims: ClaimStore;
  caps: CapStore;
  preferences: PreferencesStore;
  /** Opt-in requests: whether a confirmation email is still wanted. */
  optIns: Pick<OptInStore, 'get'>;
  /** The declared message types, whose per-user switches the consent stage honours. */
  messageTypes: MessageTypes;
  renderer: Renderer;
  links: TrackingLinks;
  /** Short links of SMS and push (tracking/short-links.ts). */
  shortener?: Shortener;
  providers: ReadonlyMap<Channel, readonly Provider[]>;
  breakers: BreakerRegistry;
  logger: Logger;
  now?: () => number;
}

export function createPolicyChain(config: ChainConfig, deps: ChainDeps): Stage[] {
  // Suppressions and preferences of the send's user are read together (one Redis round
  // trip) when the suppression stage first needs them, and only for that pass of the chain.
  const userState = new WeakMap<SendContext, Promise<[SuppressionState, UserPreferences]>>();
  const loadUser = (userId: string, ctx: SendContext) => {
    let p = userState.get(ctx);
    if (!p)
      userState.set(
        ctx,
        (p = Promise.all([deps.preferences.suppressions(userId), deps.preferences.get(userId)])),
      );
    return p;
  };
  return [
    createClaimStage({
      claims: deps.claims,
      owner: deps.owner,
      leaseMs: config.leaseMs,
      logger: deps.logger,
    }),
    createExpiryStage(),
    createOptInStage({ optIns: deps.optIns }),
    createHoldoutStage(),
    createSuppressionStage({ suppressions: async (u, ctx) => (await loadUser(u, ctx))[0] }),
    createConsentStage({
      preferences: async (u, ctx) => (await loadUser(u, ctx))[1],
      messageTypes: deps.messageTypes,
    }),
    createCapsStage(resolveChannelCaps(config), {
      caps: deps.caps,
      async onPreempted(victim, ctx) {
        const reason = `frequency_cap:${ctx.channel}:preempted_by:${ctx.send.ruleId}`;
        const ref = { userId: ctx.send.userId, sendId: victim.sendId, channel: ctx.channel };
        if (await deps.claims.suppressIfParked(ref, reason)) {
          const victimSend = {
            ...ctx.send,
            sendId: victim.sendId,
            ruleId: victim.ruleId,
            variant: victim.variant,
            category: victim.category,
            holdout: false,
          };
          ctx.sideOutcomes.push(outcome(victimSend, ctx.channel, 'suppressed', { reason }));
        }
      },
    }),
    createQuietHoursStage({ quietHours: config.quietHours }),
    createRenderStage({
      renderer: deps.renderer,
      links: deps.links,
      publicBaseUrl: config.publicBaseUrl,
      ...(deps.shortener ? { shortener: deps.shortener } : {}),
    }),
    createSizeLimitStage({ maxMessageBytes: config.maxMessageBytes }),
    createProviderStage(config, {
      providers: deps.providers,
      breakers: deps.breakers,
      logger: deps.logger,
      ...(deps.now ? { now: deps.now } : {}),
      suppress: (u, c, s) => deps.preferences.suppress(u, c, s),
      async beforeSend(ctx) {
        if (ctx.capHeld) await deps.caps.commit(ctx.send.userId, ctx.channel, ctx.send.sendId);
        return deps.claims.markSending(
          { userId: ctx.send.userId, sendId: ctx.send.sendId, channel: ctx.channel },
          deps.owner,
        );
      },
    }),
  ];
}
