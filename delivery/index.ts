// Delivery room: turns send commands into messages exactly once (claims, consent, caps, quiet hours, templates, providers, retries) and serves the send API, preference API, preference page and tracking endpoints.
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Publisher } from '../platform/bus.ts';
import type { Config } from '../platform/config.ts';
import { loadMessageTypes, type MessageTypes } from '../platform/message-types.ts';
import { topics } from '../platform/contracts.ts';
import type { RedisDeps } from '../platform/redis.ts';
import { createSentIndex } from './sent-index.ts';
import { createRedisShortLinkStore } from './tracking/short-links.ts';
import type { DeliveryStores } from './pipeline/memory-stores.ts';
import formbody from './formbody.ts';
import { preferencesRoutes } from './preferences/routes.ts';
import { createPreferencesStore } from './preferences/store.ts';
import { createPolicyPreview, type PolicyPreview } from './policy/preview.ts';
import { createEngagementRecorder } from './tracking/engagement.ts';
import { trackingRoutes } from './tracking/routes.ts';
import { createLinkUseLimiter } from './link-limits.ts';
import { createTrackingLinks, linkLifetimes } from './links.ts';
import { optInTimes } from './optin/model.ts';
import { optInRoutes } from './optin/routes.ts';
import { createOptInService, optInGate } from './optin/service.ts';
import { createRedisOptInStore } from './optin/store.ts';
import type { UserDirectory } from '../platform/users.ts';

export {
  runDelivery,
  createDelivery,
  type DeliveryHandle,
  type DeliveryOptions,
} from './pipeline/run.ts';
export { createMemoryDeliveryStores, type DeliveryStores } from './pipeline/memory-stores.ts';
export type { PolicyPreview } from './policy/preview.ts';

/**
 * What the policy chain would decide about a send now (suppression and consent), from the
 * preference store in Redis or the demo's memory: the message log's resend tells staff when
 * the chain will refuse what they asked for.
 */
export function sendPolicyPreview(
  opts: { redis: RedisDeps } | { stores: Pick<DeliveryStores, 'preferences'> },
  defaults?: { timezone: string; locale: string },
): PolicyPreview {
  return createPolicyPreview(
    'redis' in opts ? createPreferencesStore(opts.redis) : opts.stores.preferences,
    defaults,
  );
}

export { createUserMessaging } from './user-view.ts';

export { sendRoutes, type SendRoutesOptions } from './send-api/routes.ts';
export {
  createMemoryIdempotencyStore,
  createRedisIdempotencyStore,
  type IdempotencyStore,
} from './send-api/idempotency.ts';

export interface DeliveryRoutesOptions {
  config: Pick<Config, 'auth' | 'http' | 'kafka' | 'delivery'>;
  /** The declared message types; by default read (and checked) from LC_MESSAGE_TYPES_FILE. */
  messageTypes?: MessageTypes;
  /** Redis of the preference and bounce stores; or `stores` (the embedded demo's in-memory ones). */
  redis?: RedisDeps;
  stores?: Pick<DeliveryStores, 'preferences' | 'sentIndex' | 'optIns' | 'shortLinks'>;
  /** The engine's view of users: the address and locale of a confirmation email asked for through the API. */
  users?: UserDirectory;
  /** Publishes engagement events and outcomes (Kafka in production, the in-memory bus in the demo). */
  publisher: Publisher;
  logger: Logger;
  now?: () => number;
}

/**
 * HTTP routes of the delivery room, as a fastify plugin:
 *   staff (support, service; suppressions: support): GET/PATCH /v1/users/:userId/preferences,
 *     POST /v1/users/:userId/preferences/link, DELETE /v1/users/:userId/suppressions/:channel,
 *     GET /v1/users/:userId/consent-export (support)
 *   public (signed token in `?t=`): GET /t/c (click), GET /t/o.gif (open pixel), GET|POST /t/u
 *     (unsubscribe), GET|POST /p (preference page), GET|POST /c (double opt-in confirmation);
 *     GET /s/:code (short links of SMS and push)
 *   mail provider (timestamped HMAC with LC_EMAIL_EVENTS_SECRET; 503 while it is not set):
 *     POST /v1/webhooks/email (bounces, complaints, deliveries)
 */
export const deliveryRoutes: FastifyPluginAsync<DeliveryRoutesOptions> = async (app, opts) => {
  const now = opts.now ?? Date.now;
  if (!opts.redis && !opts.stores) throw new Error('deliveryRoutes needs `redis` or `stores`');
  const { emailEventsSecret, emailEventsToleranceMs, signingSecret } = opts.config.auth;
  // The mail provider holds the webhook secret; with LC_SIGNING_SECRET it could sign any link.
  if (emailEventsSecret !== '' && emailEventsSecret === signingSecret) {
    throw new Error(
      'LC_EMAIL_EVENTS_SECRET must differ from LC_SIGNING_SECRET: it is given to the mail provider, which must not be able to sign tracking, unsubscribe or preference links',
    );
  }
  const store = opts.stores?.preferences ?? createPreferencesStore(opts.redis!);
  const links = createTrackingLinks({
    publicBaseUrl: opts.config.http.publicBaseUrl,
    signingSecret,
    lifetimes: linkLifetimes(opts.config.auth),
  });
  await formbody(app);
  // One count per token across the tracking endpoints and the preference page of this process.
  const limiter = createLinkUseLimiter({ perMinute: opts.config.http.linkRateLimit });
  // Double opt-in: opt-ins through the API and the page wait for the confirmation link.
  const optIns = opts.stores?.optIns ?? createRedisOptInStore(opts.redis!);
  const optInService = createOptInService({
    store: optIns,
    preferences: store,
    links,
    publisher: opts.publisher,
    sendsTopic: topics(opts.config.kafka.topicPrefix).sends,
    times: optInTimes(opts.config.delivery),
    ...(opts.users ? { users: opts.users } : {}),
    now,
  });
  const messageTypes = opts.messageTypes ?? loadMessageTypes(opts.config.delivery.messageTypesFile);
  await preferencesRoutes(app, {
    store,
    links,
    limiter,
    messageTypes,
    now,
    ...(opts.config.delivery.doubleOptIn ? { optIn: optInGate(optInService, optIns) } : {}),
  });
  await optInRoutes(app, {
    service: optInService,
    links,
    store: optIns,
    preferences: store,
    limiter,
    now,
  });
  await trackingRoutes(app, {
    links,
    store,
    recorder: createEngagementRecorder({
      publisher: opts.publisher,
      topics: topics(opts.config.kafka.topicPrefix),
      now,
    }),
    sentIndex: opts.stores?.sentIndex ?? createSentIndex(opts.redis!),
    shortLinks: opts.stores?.shortLinks ?? createRedisShortLinkStore(opts.redis!),
    limiter,
    emailEvents: { secret: emailEventsSecret, toleranceMs: emailEventsToleranceMs },
    now,
    logger: opts.logger.child({ component: 'tracking' }),
  });
};
