// In-app channel: signed client tokens, the per-user inbox in Redis, the provider that delivers into it and the WebSocket gateway (fastify plugin) that apps connect to.
import type { Logger } from 'pino';
import type { Publisher } from '../../platform/bus.ts';
import type { Config } from '../../platform/config.ts';
import { topics } from '../../platform/contracts.ts';
import type { Registry } from '../../platform/metrics.ts';
import type { RedisDeps } from '../../platform/redis.ts';
import { createDeviceRegistry } from '../providers/devices.ts';
import type { InappGatewayOptions } from './gateway.ts';
import { createTrackingLinks, linkLifetimes } from '../links.ts';
import { createInbox } from './inbox.ts';

export {
  inappGateway,
  inappChannel,
  readEvent,
  readOutcome,
  type InappGatewayOptions,
  type GatewayFrame,
} from './gateway.ts';
export {
  createInbox,
  createMemoryInbox,
  type Inbox,
  type InboxMessage,
  type InboxPage,
} from './inbox.ts';
export { createRedisLiveChannel, createMemoryLiveChannel, type LiveChannel } from './live.ts';
export { createInappProvider } from './provider.ts';
export { signInappToken, verifyInappToken } from './token.ts';

/**
 * Options of the gateway plugin from config, for the API process:
 * `app.register(inappGateway, inappGatewayOptions(config, { redis, publisher, logger }))`.
 */
export function inappGatewayOptions(
  config: Pick<Config, 'auth' | 'kafka' | 'http'>,
  deps: { redis: RedisDeps; publisher: Publisher; logger: Logger; metrics?: Registry },
): InappGatewayOptions {
  return {
    inappSecret: config.auth.inappSecret,
    redis: deps.redis.redis,
    keys: deps.redis.keys,
    inbox: createInbox(deps.redis),
    devices: createDeviceRegistry(deps.redis),
    publisher: deps.publisher,
    eventsTopic: topics(config.kafka.topicPrefix).events,
    deliveriesTopic: topics(config.kafka.topicPrefix).deliveries,
    logger: deps.logger,
    idleTimeoutMs: 5 * 60_000,
    preferencesLink: preferencesLinkOf(config),
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
  };
}

/** The signed preference page links of the emails' footers, for the app's settings. */
export function preferencesLinkOf(
  config: Pick<Config, 'auth' | 'http'>,
): (userId: string, now: number) => string {
  const links = createTrackingLinks({
    publicBaseUrl: config.http.publicBaseUrl,
    signingSecret: config.auth.signingSecret,
    lifetimes: linkLifetimes(config.auth),
  });
  return (userId, now) => links.preferences(userId, now);
}

/** Right to be forgotten: the user's in-app inbox and push devices (call on `user_deleted`). */
export async function eraseUserMessaging(redis: RedisDeps, userId: string): Promise<void> {
  await Promise.all([createInbox(redis).erase(userId), createDeviceRegistry(redis).erase(userId)]);
}
