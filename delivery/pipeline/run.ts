// Wires the delivery process: Kafka bus, Redis stores, template renderer, channel
// providers, policy chain and the worker. `runDelivery` starts it and returns a handle
// with stop/health; `bin`'s `lifecycle run delivery` and ./main.ts call it.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../../platform/config.ts';
import { loadMessageTypes, type MessageTypes } from '../../platform/message-types.ts';
import type { BatchRetry } from '../../platform/consume.ts';
import type { Bus } from '../../platform/bus.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { topics as topicNames, type Channel } from '../../platform/contracts.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import type { Registry } from '../../platform/metrics.ts';
import { openRedis, type RedisDeps } from '../../platform/redis.ts';
import type { Service } from '../../platform/shutdown.ts';
import { createRedisClaimStore } from '../policy/claims.ts';
import { createRedisCapStore } from '../policy/caps-store.ts';
import { createPreferencesStore } from '../preferences/store.ts';
import { createRedisOptInStore } from '../optin/store.ts';
import { createIdentifyOptIns } from '../optin/identify.ts';
import { optInTimes } from '../optin/model.ts';
import { createOptInService } from '../optin/service.ts';
import type { Provider } from '../provider.ts';
import { createTrackingLinks, linkLifetimes } from '../links.ts';
import { createPolicyChain } from './chain.ts';
import { createRedisDelayQueue } from './delay-queue.ts';
import { createSendPipeline } from './pipeline.ts';
import { createSentIndex } from '../sent-index.ts';
import { createBreakerRegistry } from './provider-stage.ts';
import type { Renderer } from './render.ts';
import type { DeliveryStores } from './memory-stores.ts';
import type { Inbox } from '../inapp/inbox.ts';
import { createDeliveryWorker } from './worker.ts';
import { createRedisShortLinkStore, createShortener } from '../tracking/short-links.ts';
import { createManagedTemplates, type ManagedTemplates } from '../templates/managed.ts';
import { createMemoryCoordinator, createRedisCoordinator } from '../templates/store.ts';

export type DeliveryConfig = Pick<Config, 'env' | 'kafka' | 'redis' | 'delivery' | 'http' | 'auth'>;

export interface DeliveryOptions {
  /** Defaults to a KafkaBus from config. */
  bus?: Bus;
  redis?: RedisDeps;
  /** Stores to use instead of Redis (the embedded demo passes createMemoryDeliveryStores()). */
  stores?: DeliveryStores;
  /** A renderer to use as it is (tests); without it and `templates`, this process reads the managed templates store itself. */
  renderer?: Renderer;
  /** Managed templates shared with other parts of the process (the demo's API); started and stopped by their owner. */
  templates?: ManagedTemplates;
  /** Channel -> providers in priority order; defaults to createProviders(config). */
  providers?: ReadonlyMap<Channel, readonly Provider[]>;
  metrics?: Registry;
  /** Identity of this worker in claims (defaults to a random id per process). */
  owner?: string;
  /** Clock of policy decisions and the delay queue (tests move it forward; default Date.now). */
  now?: () => number;
  /** How the consume loops retry a failing batch before stopping its partition (tests make it quick). */
  retry?: BatchRetry;
  /**
   * The in-app inbox kept beside `stores` (the demo's, in memory): a `user_deleted` erases it
   * as it erases the inbox and push devices in Redis.
   */
  inbox?: Pick<Inbox, 'erase'>;
  /** The declared message types; by default read (and checked) from LC_MESSAGE_TYPES_FILE at start. */
  messageTypes?: MessageTypes;
}

export interface DeliveryHandle extends Service {
  /** Handles due delay-queue entries now (tests); returns how many were handled. */
  pollDelayQueue(): Promise<number>;
}

export async function createDelivery(
  config: DeliveryConfig,
  logger: Logger,
  options: DeliveryOptions = {},
): Promise<DeliveryHandle> {
  const log = logger.child({ component: 'delivery' });
  // Checked first: an invalid declaration stops the start before anything is opened.
  const messageTypes = options.messageTypes ?? loadMessageTypes(config.delivery.messageTypesFile);
  const ownsRedis = !options.redis && !options.stores;
  // Refuses a Redis that could lose acknowledged claims or unsubscribes (platform/redis.ts).
  const redisDeps = options.redis ?? (options.stores ? null : await openRedis(config, log));
  const ownsBus = !options.bus;
  const bus = options.bus ?? KafkaBus.fromConfig(config, log);
  const d = config.delivery;
  const t = topicNames(config.kafka.topicPrefix);
  // Sends render the version published in the templates store (read from its topic before
  // the first send, followed after): a publish reaches every worker without a restart.
  const ownTemplates =
    options.renderer || options.templates
      ? null
      : createManagedTemplates(
          {
            dir: d.templatesDir,
            defaultTimezone: d.defaultTimezone,
            publishFiles: d.templatesPublishFiles,
            topics: t,
            watch: true,
          },
          {
            bus,
            publisher: bus.publisher(),
            coordinator: redisDeps ? createRedisCoordinator(redisDeps) : createMemoryCoordinator(),
            logger: log,
            ...(options.metrics ? { registry: options.metrics } : {}),
          },
        );
  const templates = options.templates ?? ownTemplates;
  const renderer: Renderer = options.renderer ?? templates!.renderer;
  const providers =
    options.providers ??
    (await import('../channels.ts')).createProviders(config, {
      logger: log,
      ...(redisDeps ? { redis: redisDeps } : {}),
    });
  const owner = options.owner ?? `dlv-${randomUUID()}`;
  if (d.smtpSendTimeoutMs >= d.leaseMs)
    log.warn(
      { smtpSendTimeoutMs: d.smtpSendTimeoutMs, leaseMs: d.leaseMs },
      'LC_SMTP_SEND_TIMEOUT_MS is not below LC_DELIVERY_LEASE_MS: a slow SMTP call may outlive its claim, and another worker may send the message too',
    );
  const stores: DeliveryStores = options.stores ?? {
    claims: createRedisClaimStore(redisDeps!),
    caps: createRedisCapStore(redisDeps!),
    preferences: createPreferencesStore(redisDeps!),
    optIns: createRedisOptInStore(redisDeps!),
    delayQueue: createRedisDelayQueue(redisDeps!),
    sentIndex: createSentIndex(redisDeps!),
    shortLinks: createRedisShortLinkStore(redisDeps!),
  };
  const { claims, caps, preferences, delayQueue } = stores;
  const breakers = createBreakerRegistry({
    threshold: d.breakerThreshold,
    cooldownMs: d.breakerCooldownMs,
  });
  const links = createTrackingLinks({
    publicBaseUrl: config.http.publicBaseUrl,
    signingSecret: config.auth.signingSecret,
    lifetimes: linkLifetimes(config.auth),
  });
  const stages = createPolicyChain(
    { ...d, publicBaseUrl: config.http.publicBaseUrl },
    {
      owner,
      claims,
      caps,
      preferences,
      optIns: stores.optIns,
      messageTypes,
      renderer,
      links,
      shortener: createShortener({
        store: stores.shortLinks,
        links,
        signingSecret: config.auth.signingSecret,
        publicBaseUrl: config.http.publicBaseUrl,
        ttlS: d.shortLinkTtlS,
      }),
      providers,
      breakers,
      logger: log,
      ...(options.now ? { now: options.now } : {}),
    },
  );
  const pipeline = createSendPipeline({
    stages,
    claims,
    caps,
    delayQueue,
    sentIndex: stores.sentIndex,
    owner,
    logger: log,
    ...(options.metrics ? { metrics: options.metrics } : {}),
    defaults: { timezone: d.defaultTimezone, locale: 'en' },
    ...(options.now ? { now: options.now } : {}),
  });
  const worker = createDeliveryWorker(
    {
      groupId: d.groupId,
      concurrency: d.concurrency,
      delayPollMs: d.delayPollMs,
      leaseMs: d.leaseMs,
      ...(options.retry ? { retry: options.retry } : {}),
    },
    {
      bus,
      topics: t,
      pipeline,
      delayQueue,
      ...(redisDeps?.durable ? { durable: redisDeps.durable } : {}),
      logger: log,
      onOptInTrait: createIdentifyOptIns({
        doubleOptIn: d.doubleOptIn,
        store: stores.optIns,
        preferences,
        service: createOptInService({
          store: stores.optIns,
          preferences,
          links,
          publisher: bus.publisher(),
          sendsTopic: t.sends,
          times: optInTimes(d),
          now: options.now ?? Date.now,
        }),
      }),
      onUserDeleted: async (userId, at) => {
        await preferences.markDeleted(userId, at);
        await stores.optIns.erase(userId);
        // Right to be forgotten: the in-app inbox and push devices go too, for good before the commit.
        if (redisDeps) {
          await (await import('../inapp/index.ts')).eraseUserMessaging(redisDeps, userId);
          await redisDeps.durable?.();
        } else await options.inbox?.erase(userId);
      },
      health: () => ({
        breakers: breakers.states(Date.now()),
        ...(templates ? { templates: templates.health() } : {}),
      }),
      ...(options.now ? { now: options.now } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
    },
  );
  return {
    name: 'delivery',
    pollDelayQueue: () => worker.pollOnce(),
    async start() {
      await bus.ensureTopics(internalTopicSpecs(t, config.kafka.partitions));
      // No send is rendered before the store holds what the topic held.
      await ownTemplates?.start();
      await worker.start();
    },
    async stop() {
      await worker.stop();
      for (const list of providers.values()) for (const p of list) await p.close?.();
      await ownTemplates?.stop();
      if (ownsBus) await bus.close();
      if (ownsRedis) redisDeps?.redis.disconnect();
    },
    health: () => {
      const report = worker.health();
      const store = templates?.health();
      return store && !store.ok ? { ...report, ok: false } : report;
    },
  };
}

/** Starts the delivery process. */
export async function runDelivery(
  config: DeliveryConfig,
  logger: Logger,
  options: DeliveryOptions = {},
): Promise<DeliveryHandle> {
  const handle = await createDelivery(config, logger, options);
  await handle.start();
  return handle;
}
