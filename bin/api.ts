// The API process: staff API keys and the audit log, the send API, the preference API, campaigns, public tracking
// endpoints, the signed preference page, the in-app WebSocket gateway, the managed templates, the analysts' dashboards,
// the message log (with resends) and the user lookup on one fastify server, with OpenAPI, health and Prometheus metrics.
// Composition root only: each room owns its routes.
import { existsSync } from 'node:fs';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import websocket from '@fastify/websocket';
import type { Logger } from 'pino';
import { InMemoryBus, type Bus, type Publisher } from '../platform/bus.ts';
import type { Config } from '../platform/config.ts';
import {
  httpServerOptions,
  metricsTokenCredential,
  operationalRoutes,
  setupHttpKit,
} from '../platform/http.ts';
import { loadMessageTypes } from '../platform/message-types.ts';
import type { RedisDeps } from '../platform/redis.ts';
import type { Registry } from '../platform/metrics.ts';
import type { UserLookup } from '../platform/users.ts';
import {
  createCampaignTable,
  createMemoryAudienceLists,
  createMemoryCampaignLocks,
  createMemoryProgressStore,
  createRedisAudienceLists,
  createRedisCampaignLocks,
  createRedisProgressStore,
  createRedisUserDirectory,
  createUserDirectory,
  MemoryStores,
  type AudienceLists,
  type CampaignTable,
  type ProgressStore,
} from '../engine/index.ts';
import { listTemplates, openRuleSet, type RejectedReload, type RuleSet } from '../rules/index.ts';
import {
  createMemoryIdempotencyStore,
  createRedisIdempotencyStore,
  createUserMessaging,
  deliveryRoutes,
  sendPolicyPreview,
  sendRoutes,
} from '../delivery/index.ts';
import {
  inappGateway,
  inappGatewayOptions,
  preferencesLinkOf,
  type Inbox,
  type LiveChannel,
} from '../delivery/inapp/index.ts';
import type { DeliveryStores } from '../delivery/index.ts';
import { topics } from '../platform/contracts.ts';
import { createManagedTemplates, type ManagedTemplates } from '../delivery/templates/managed.ts';
import { templateRoutes } from '../delivery/templates/routes.ts';
import { createMemoryCoordinator } from '../delivery/templates/store.ts';
import { createAnalyticsStore, type AnalyticsStore } from '../analytics/store.ts';
import { messageRoutes } from '../analytics/messages-routes.ts';
import { dashboardRoutes } from '../dashboards/index.ts';
import { adminPages, campaignRoutes, ruleRoutes, userRoutes } from '../admin/index.ts';
import {
  accessRoutes,
  createJwtVerifier,
  createMemoryApiKeyStore,
  createMemoryAuditLog,
  createRedisApiKeyStore,
  createRedisAuditLog,
  ensureBootstrapKey,
  staffCredential,
  type ApiKeyStore,
  type AuditLog,
} from '../access/index.ts';

export interface ApiDeps {
  /** Production: preferences, tracking, inbox and live in-app messages in Redis. */
  redis?: RedisDeps;
  /** The embedded demo: the same stores in memory, shared with its delivery pipeline. */
  memory?: {
    stores: Pick<DeliveryStores, 'preferences' | 'sentIndex' | 'optIns' | 'shortLinks'>;
    inbox: Inbox;
    live: LiveChannel;
  };
  publisher: Publisher;
  /** The bus `publisher` belongs to (production: Kafka): the campaigns topic is read through it. */
  bus?: Bus;
  /**
   * Campaigns, their uploaded lists and the scheduler's fan-out progress (the demo shares its
   * own); by default a view of the campaigns topic on `bus` (or a bus of this server alone),
   * with lists and progress in `redis` or memory.
   */
  campaigns?: {
    table: CampaignTable;
    lists: AudienceLists;
    progress: Pick<ProgressStore, 'load'>;
  };
  /** The rule files in force, which campaigns are checked against; by default LC_RULES_DIR, hot-reloaded. */
  rules?: () => RuleSet;
  /** With `rules`: the last refused reload of the rule files (the rules page shows its problems). */
  rulesRejected?: () => RejectedReload | null;
  logger: Logger;
  metrics: Registry;
  /** The analytics store the dashboards read (the demo's chDB); by default a ClickHouse client from the config, opened on first use. */
  analytics?: AnalyticsStore;
  /** Staff keys and the audit log; by default in Redis with `redis`, in memory with `memory`. */
  access?: { keys: ApiKeyStore; audit: AuditLog };
  /** Users as the engine sees them (previews, the send API, user lookup); by default the engine's state in `redis`. */
  users?: UserLookup;
  /** How many partitions the events topic has (user search reads each); by default LC_KAFKA_PARTITIONS. */
  eventPartitions?: () => Promise<number>;
  /** The clock of keys and audit records. */
  now?: () => number;
  /**
   * The managed templates, started (`lifecycle run api`: the Kafka topic; the demo: its bus).
   * Without them the server reads a private copy seeded from LC_TEMPLATES_DIR, which no other
   * process sees (tests, tools).
   */
  templates?: ManagedTemplates;
  /** Extra health checks of the process (e.g. the demo's embedded services). */
  health?: () => Record<string, boolean>;
}

export async function createApiServer(
  config: Readonly<Config>,
  deps: ApiDeps,
): Promise<FastifyInstance> {
  // Request logs keep the path only: query strings carry signed tokens.
  const log = deps.logger.child(
    { component: 'api' },
    {
      serializers: {
        req: (req: { method: string; url: string }) => ({
          method: req.method,
          path: req.url.split('?')[0],
        }),
      },
    },
  );
  // pino's Logger type is wider than fastify's base logger; the instance is the same.
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    ...httpServerOptions(config.http),
  });
  const { redis, memory } = deps;
  // What rules, campaigns, sends and the preference page may name: checked once, at start.
  const messageTypes = loadMessageTypes(config.delivery.messageTypesFile);
  if (!redis && !memory) throw new Error('createApiServer needs `redis` or `memory`');
  const now = deps.now ?? Date.now;
  // In memory without the demo's engine, an empty engine state: every user lookup is a 404.
  const users =
    deps.users ??
    (redis
      ? createRedisUserDirectory(redis, {
          eventsTopic: topics(config.kafka.topicPrefix).events,
          partitions: deps.eventPartitions ?? config.kafka.partitions,
        })
      : createUserDirectory(new MemoryStores()));
  // What delivery holds about a user, for the lookup: its Redis stores, or the demo's.
  const messaging = createUserMessaging(
    redis ? { redis } : { preferences: memory!.stores.preferences, inbox: memory!.inbox },
  );
  const access = deps.access ?? {
    keys: redis ? createRedisApiKeyStore(redis) : createMemoryApiKeyStore(),
    audit: redis ? createRedisAuditLog(redis) : createMemoryAuditLog(now),
  };
  const { jwtJwksUrl, jwtIssuer, jwtAudience, jwtRoleClaim } = config.auth;
  // Staff routes take an API key, a JWT of the identity provider (when configured) or the
  // break-glass LC_ADMIN_TOKEN; the in-app gateway adds its client tokens itself.
  await setupHttpKit(app, {
    credentials: {
      metrics: metricsTokenCredential(config.metrics.token),
      staff: staffCredential({
        adminToken: config.auth.adminToken,
        keys: access.keys,
        now,
        ...(jwtJwksUrl !== ''
          ? {
              jwt: createJwtVerifier({
                jwksUrl: jwtJwksUrl,
                issuer: jwtIssuer,
                audience: jwtAudience,
                roleClaim: jwtRoleClaim,
              }),
            }
          : {}),
      }),
    },
    audit: access.audit,
    now,
    metrics: deps.metrics,
    openapi: {
      info: {
        title: 'Lifecycle API',
        version: '1',
        description:
          'Staff API (bearer API key, JWT or LC_ADMIN_TOKEN; each operation lists the roles it admits in `x-roles`): API keys and the audit log, the send API (role service), user lookup, preferences and suppressions, templates, campaigns, dashboards data, the message log and resends. Public endpoints: the dashboards page (a static shell that asks for a key), signed tracking links (click, open, one-click unsubscribe), the signed preference page, the in-app gateway and inbox (signed client token).',
      },
      tags: [
        { name: 'access', description: 'Staff API keys and the audit log (role admin).' },
        {
          name: 'preferences',
          description: "A user's consent, preferences and suppressions (roles support, service).",
        },
        {
          name: 'templates',
          description: 'Message templates: list, validate, preview (role marketer).',
        },
        {
          name: 'rules',
          description:
            'The rules in force and refused rule files; simulations and backtests of drafts (roles marketer, analyst reads).',
        },
        {
          name: 'dashboards',
          description: "The analysts' dashboards: the page and its data (role analyst).",
        },
        {
          name: 'tracking',
          description:
            'The signed links of messages: clicks, the open pixel, unsubscribes (public: the link is signed).',
        },
        {
          name: 'pages',
          description: "The end user's preference page (public: the link is signed).",
        },
        {
          name: 'webhooks',
          description:
            "Providers' callbacks, each checking its own signature (public: the body is signed).",
        },
        {
          name: 'inapp',
          description: "The in-app inbox and push devices of the app's user (signed client token).",
        },
      ],
    },
  });
  const bootstrap = await ensureBootstrapKey(access.keys, config.auth.bootstrapAdminKey, now());
  if (bootstrap) {
    await access.audit.append({
      actor: 'bootstrap',
      actorName: 'LC_BOOTSTRAP_ADMIN_KEY',
      role: 'admin',
      action: 'key.create',
      target: `key:${bootstrap.id}`,
      before: null,
      after: bootstrap,
      requestId: null,
      at: new Date(now()).toISOString(),
    });
    log.info({ keyId: bootstrap.id }, 'stored LC_BOOTSTRAP_ADMIN_KEY as the admin key bootstrap');
  }
  await app.register(async (scope) => {
    await accessRoutes(scope, { keys: access.keys, audit: access.audit, now });
  });
  await app.register(async (scope) => {
    await userRoutes(scope, { users, messaging });
  });
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } });
  await app.register(async (scope) => {
    await deliveryRoutes(scope, {
      config,
      ...(redis ? { redis } : { stores: memory!.stores }),
      users,
      publisher: deps.publisher,
      logger: deps.logger,
      messageTypes,
    });
  });
  await app.register(async (scope) => {
    await inappGateway(
      scope,
      redis
        ? {
            ...inappGatewayOptions(config, {
              redis,
              publisher: deps.publisher,
              logger: deps.logger,
            }),
            metrics: deps.metrics,
          }
        : {
            inappSecret: config.auth.inappSecret,
            inbox: memory!.inbox,
            live: memory!.live,
            publisher: deps.publisher,
            eventsTopic: topics(config.kafka.topicPrefix).events,
            deliveriesTopic: topics(config.kafka.topicPrefix).deliveries,
            preferencesLink: preferencesLinkOf(config),
            logger: deps.logger,
            metrics: deps.metrics,
          },
    );
  });
  // Managers edit, version, publish, preview and test-send templates through the admin API.
  let templates = deps.templates;
  if (!templates) {
    const bus = new InMemoryBus(1);
    const own = createManagedTemplates(
      {
        dir: config.delivery.templatesDir,
        defaultTimezone: config.delivery.defaultTimezone,
        publishFiles: config.delivery.templatesPublishFiles,
        topics: topics(config.kafka.topicPrefix),
        watch: true,
      },
      { bus, publisher: bus.publisher(), coordinator: createMemoryCoordinator(), logger: log },
    );
    await own.start();
    app.addHook('onClose', async () => own.stop());
    templates = own;
  }
  await app.register(async (scope) => {
    await templateRoutes(scope, {
      templates: templates,
      users,
      sends: { publisher: deps.publisher, topic: topics(config.kafka.topicPrefix).sends },
      testSends: {
        production: config.env === 'production',
        domains: config.delivery.testSendDomains,
      },
      now,
    });
  });
  // The product backend sends transactional and one-off messages, checked against the same templates.
  await app.register(async (scope) => {
    await sendRoutes(scope, {
      publisher: deps.publisher,
      topicPrefix: config.kafka.topicPrefix,
      maxDataBytes: config.delivery.sendMaxDataBytes,
      templates: templates.renderer,
      users,
      idempotency: redis ? createRedisIdempotencyStore(redis) : createMemoryIdempotencyStore(),
      messageTypes,
      logger: deps.logger,
      now,
    });
  });
  // Analysts' dashboards: the page, and its data through the admin API.
  let ownStore: Promise<AnalyticsStore> | undefined;
  const analytics = async () => ({
    store: deps.analytics ?? (await (ownStore ??= createAnalyticsStore(config.clickhouse))),
    database: config.clickhouse.database,
  });
  app.addHook('onClose', async () => {
    const store = await ownStore?.catch(() => undefined);
    await store?.close();
  });
  await app.register(async (scope) => {
    await dashboardRoutes(scope, { dir: config.analytics.dashboardsDir, analytics });
  });
  // Support's message log: what was sent to whom, and resends through the policy chain.
  await app.register(async (scope) => {
    await messageRoutes(scope, {
      analytics,
      publisher: deps.publisher,
      sendsTopic: topics(config.kafka.topicPrefix).sends,
      bodyTtlDays: config.analytics.messageBodyTtlDays,
      policyPreview: sendPolicyPreview(redis ? { redis } : { stores: memory!.stores }, {
        timezone: config.delivery.defaultTimezone,
        locale: 'en',
      }),
      now,
    });
  });
  // Campaigns: a view of the campaigns topic, checked against the rules in force.
  let rules = deps.rules;
  let rulesRejected = deps.rulesRejected ?? (() => null);
  if (!rules) {
    const live = await openRuleSet(config.engine.rulesDir, { messageTypes, logger: log });
    app.addHook('onClose', async () => live.close());
    rules = live.current;
    rulesRejected = live.rejected;
  }
  let campaigns = deps.campaigns;
  if (!campaigns) {
    const bus = deps.bus ?? new InMemoryBus(1);
    const t = topics(config.kafka.topicPrefix);
    const table = createCampaignTable(
      { topics: t },
      {
        bus,
        publisher: deps.bus ? deps.publisher : bus.publisher(),
        locks: redis ? createRedisCampaignLocks(redis) : createMemoryCampaignLocks(),
        logger: deps.logger,
        registry: deps.metrics,
      },
    );
    await table.start();
    app.addHook('onClose', async () => table.stop());
    campaigns = {
      table,
      lists: redis ? createRedisAudienceLists(redis) : createMemoryAudienceLists(),
      progress: redis
        ? createRedisProgressStore(redis.redis, redis.keys)
        : createMemoryProgressStore(now),
    };
  }
  const templatesDir = config.delivery.templatesDir;
  // The names a campaign or rule may send: the folder's, and those made through the templates API,
  // which live in the managed store only (delivery renders both from it).
  const managed = templates;
  const knownTemplates = async () =>
    new Set([
      ...(existsSync(templatesDir) ? await listTemplates(templatesDir) : []),
      ...managed.store.names(),
    ]);
  await app.register(async (scope) => {
    await campaignRoutes(scope, {
      campaigns: campaigns.table,
      lists: campaigns.lists,
      progress: campaigns.progress,
      rules,
      templates: knownTemplates,
      messageTypes,
      analytics,
      limits: {
        listMaxRows: config.engine.campaignListMaxRows,
        listMaxBytes: config.engine.campaignListMaxBytes,
      },
      now,
    });
  });
  // The marketers' rules pages: the set in force, its refused files, simulations and backtests of drafts.
  await app.register(async (scope) => {
    await ruleRoutes(scope, {
      rules,
      rejected: rulesRejected,
      rulesDir: config.engine.rulesDir,
      templates: knownTemplates,
      analytics,
    });
  });
  // The admin pages (`/`): static files; their data is the staff API above, with the user's credential.
  await app.register(async (scope) => {
    await adminPages(scope);
  });
  operationalRoutes(app, {
    metrics: deps.metrics,
    metricsAccess: 'metrics',
    health: () => {
      const checks: Record<string, boolean> = {
        ...(redis ? { redis: redis.redis.status === 'ready' } : {}),
        templates: templates.health().ok,
        campaigns: campaigns.table.health().ok,
        ...(deps.health?.() ?? {}),
      };
      return { ok: Object.values(checks).every(Boolean), checks };
    },
  });
  return app;
}
