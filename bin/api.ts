// The API process: staff API keys and the audit log, the preference API, campaigns, public tracking endpoints, the signed
// preference page, the in-app WebSocket gateway and the analysts' dashboards on one fastify server, with OpenAPI, health
// and Prometheus metrics. Composition root only: each room owns its routes.
import { existsSync } from 'node:fs';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import websocket from '@fastify/websocket';
import type { Logger } from 'pino';
import { InMemoryBus, type Bus, type Publisher } from '../platform/bus.ts';
import type { Config } from '../platform/config.ts';
import { httpServerOptions, operationalRoutes, setupHttpKit } from '../platform/http.ts';
import type { RedisDeps } from '../platform/redis.ts';
import type { Registry } from '../platform/metrics.ts';
import type { UserDirectory } from '../platform/users.ts';
import {
  campaignViewGroup,
  createCampaignTable,
  createMemoryAudienceLists,
  createMemoryCampaignLocks,
  createMemoryProgressStore,
  createRedisAudienceLists,
  createRedisCampaignLocks,
  createRedisProgressStore,
  createRedisStateStore,
  createUserDirectory,
  MemoryStores,
  type AudienceLists,
  type CampaignTable,
  type ProgressStore,
} from '../engine/index.ts';
import { listTemplates, openRuleSet, type RuleSet } from '../rules/index.ts';
import { deliveryRoutes } from '../delivery/index.ts';
import {
  inappGateway,
  inappGatewayOptions,
  type Inbox,
  type LiveChannel,
} from '../delivery/inapp/index.ts';
import type { DeliveryStores } from '../delivery/index.ts';
import { topics } from '../platform/contracts.ts';
import { createTemplateRenderer } from '../delivery/templates/index.ts';
import { templateRoutes } from '../delivery/templates/routes.ts';
import { createAnalyticsStore, type AnalyticsStore } from '../analytics/store.ts';
import { dashboardRoutes } from '../dashboards/index.ts';
import { campaignRoutes, userRoutes } from '../admin/index.ts';
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
    stores: Pick<DeliveryStores, 'preferences' | 'sentIndex'>;
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
  logger: Logger;
  metrics: Registry;
  /** The analytics store the dashboards read (the demo's chDB); by default a ClickHouse client from the config, opened on first use. */
  analytics?: AnalyticsStore;
  /** Staff keys and the audit log; by default in Redis with `redis`, in memory with `memory`. */
  access?: { keys: ApiKeyStore; audit: AuditLog };
  /** Users as the engine sees them (previews, the send API, user lookup); by default the engine's state in `redis`. */
  users?: UserDirectory;
  /** The clock of keys and audit records. */
  now?: () => number;
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
  if (!redis && !memory) throw new Error('createApiServer needs `redis` or `memory`');
  const now = deps.now ?? Date.now;
  // In memory without the demo's engine, an empty engine state: every user lookup is a 404.
  const users =
    deps.users ??
    createUserDirectory(
      redis
        ? createRedisStateStore(redis, { eventsTopic: topics(config.kafka.topicPrefix).events })
        : new MemoryStores(),
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
    openapi: {
      info: {
        title: 'Lifecycle API',
        version: '1',
        description:
          'Staff API (bearer API key, JWT or LC_ADMIN_TOKEN; each operation lists the roles it admits in `x-roles`): API keys and the audit log, user preferences and suppressions, templates, campaigns, dashboards data. Public endpoints: the dashboards page (a static shell that asks for a key), signed tracking links (click, open, one-click unsubscribe), the signed preference page, the in-app gateway and inbox (signed client token).',
      },
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
    await userRoutes(scope, { users });
  });
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } });
  await app.register(async (scope) => {
    await deliveryRoutes(scope, {
      config,
      ...(redis ? { redis } : { stores: memory!.stores }),
      publisher: deps.publisher,
      logger: deps.logger,
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
            logger: deps.logger,
            metrics: deps.metrics,
          },
    );
  });
  // Managers list, validate and preview templates through the admin API.
  const renderer = createTemplateRenderer(
    {
      dir: config.delivery.templatesDir,
      strict: true,
      defaultTimezone: config.delivery.defaultTimezone,
      watch: true,
    },
    deps.logger,
  );
  app.addHook('onClose', async () => renderer.close());
  await app.register(async (scope) => {
    await templateRoutes(scope, { renderer, dir: config.delivery.templatesDir });
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
  // Campaigns: a view of the campaigns topic, checked against the rules in force.
  let rules = deps.rules;
  if (!rules) {
    const live = await openRuleSet(config.engine.rulesDir, { logger: log });
    app.addHook('onClose', async () => live.close());
    rules = live.current;
  }
  let campaigns = deps.campaigns;
  if (!campaigns) {
    const bus = deps.bus ?? new InMemoryBus(1);
    const t = topics(config.kafka.topicPrefix);
    const table = createCampaignTable(
      { topics: t, groupId: campaignViewGroup(t.campaigns) },
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
  await app.register(async (scope) => {
    await campaignRoutes(scope, {
      campaigns: campaigns.table,
      lists: campaigns.lists,
      progress: campaigns.progress,
      rules,
      templates: async () => (existsSync(templatesDir) ? listTemplates(templatesDir) : null),
      analytics,
      limits: {
        listMaxRows: config.engine.campaignListMaxRows,
        listMaxBytes: config.engine.campaignListMaxBytes,
      },
      now,
    });
  });
  operationalRoutes(app, {
    metrics: deps.metrics,
    health: () => {
      const checks: Record<string, boolean> = {
        ...(redis ? { redis: redis.redis.status === 'ready' } : {}),
        campaigns: campaigns.table.health().ok,
        ...(deps.health?.() ?? {}),
      };
      return { ok: Object.values(checks).every(Boolean), checks };
    },
  });
  return app;
}
