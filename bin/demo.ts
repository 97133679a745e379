// `lifecycle demo`: the embedded default. One process: the in-memory bus and engine state,
// the real ingest API, delivery pipeline, tracking/preferences/in-app API and an SMTP sink
// that keeps every email, seeded with sample users, and the analytics sink into chDB with
// the dashboards on the API server; synthetic users (devtools/generator.ts) keep arriving
// through the same ingest and preference APIs an app would call. No services: bus, engine
// state and delivery stores are in memory, analytics in chDB. For trying the product and
// authoring rules; not a production mode (nothing survives a restart but the outbox and
// the analytics tables).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { InMemoryBus, internalTopicSpecs } from '../platform/bus.ts';
import type { Config } from '../platform/config.ts';
import { loadConfig } from '../platform/config.ts';
import { topics } from '../platform/contracts.ts';
import { loadMessageTypes } from '../platform/message-types.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createSmtpSink } from '../devtools/smtp-sink.ts';
import {
  createGenerator,
  progressLine,
  type GeneratorOptions,
  type GeneratorStats,
} from '../devtools/generator.ts';
import {
  batchRequest,
  optInRequest,
  refusal,
  type HttpRequest,
} from '../devtools/generator-http.ts';
import { openRuleSet, type RuleSet } from '../rules/index.ts';
import {
  campaignJobs,
  campaignViewFreshness,
  createCampaignRuleSet,
  createCampaignTable,
  createMemoryAudienceLists,
  createMemoryCampaignLocks,
  createMemoryEngine,
  createMemoryScheduler,
  createUserDirectory,
} from '../engine/index.ts';
import { schedulerConfigFrom } from '../engine/scheduler/index.ts';
import { createDelivery, createMemoryDeliveryStores } from '../delivery/index.ts';
import { createMemoryInbox, createMemoryLiveChannel } from '../delivery/inapp/index.ts';
import { createProviders } from '../delivery/channels.ts';
import { createIngestServer, parseWriteKeyEntry } from '../ingestion/index.ts';
import { createAnalyticsSink, openAnalytics, sinkConfig } from '../analytics/index.ts';
import { createManagedTemplates } from '../delivery/templates/managed.ts';
import { createMemoryCoordinator } from '../delivery/templates/store.ts';
import { createApiServer } from './api.ts';

export interface DemoOptions {
  dataDir: string;
  /** Seed sample users and events (default true). */
  seed: boolean;
  /** Config overrides by dotted path (tests pick free ports with `http.apiPort: 0`). */
  overrides?: Record<string, unknown>;
  /** Synthetic users arriving all the time (rate, seed, simulated day); none without it. */
  generate?: GeneratorOptions;
  /** Where the generator's one-line progress goes, and how often (default every 5 s). */
  progress?: { write(line: string): void; everyMs?: number };
}

export interface Demo {
  urls: Record<string, string>;
  /** A server write key (a backend's: may set email, plan and the other protected traits). */
  writeKey: string;
  /** A client write key (a browser's: protected traits are dropped), when one is configured. */
  clientKey?: string;
  /** The synthetic user generator, when `generate` was given. */
  generator?: { rate: number; seed: number; dayMs: number; stats(): GeneratorStats };
  stop(): Promise<void>;
}

/** Sample users of a B2C subscription product, as a Segment SDK would send them. */
export function seedBatch(now: number): { batch: object[]; optedIn: string[] } {
  const users = [
    {
      id: 'demo-ada',
      firstName: 'Ada',
      email: 'ada@example.com',
      plan: 'trial',
      locale: 'en',
      timezone: 'Europe/London',
      optIn: true,
    },
    {
      id: 'demo-bert',
      firstName: 'Bert',
      email: 'bert@example.com',
      plan: 'trial',
      locale: 'de',
      timezone: 'Europe/Berlin',
      optIn: true,
    },
    {
      id: 'demo-chen',
      firstName: 'Chen',
      email: 'chen@example.com',
      plan: 'pro',
      locale: 'en',
      timezone: 'Asia/Singapore',
      optIn: false,
    },
  ];
  const iso = (ms: number) => new Date(ms).toISOString();
  const batch: object[] = [];
  users.forEach((u, i) => {
    const t = now - 60_000 + i * 1000;
    const traits = {
      email: u.email,
      firstName: u.firstName,
      plan: u.plan,
      locale: u.locale,
      timezone: u.timezone,
    };
    batch.push({
      type: 'identify',
      userId: u.id,
      messageId: `seed-${u.id}-identify`,
      timestamp: iso(t),
      traits,
    });
    batch.push({
      type: 'track',
      userId: u.id,
      event: 'user_registered',
      messageId: `seed-${u.id}-registered`,
      timestamp: iso(t + 100),
      properties: {},
    });
    batch.push({
      type: 'track',
      userId: u.id,
      event: 'app_opened',
      messageId: `seed-${u.id}-open`,
      timestamp: iso(t + 200),
      properties: {},
    });
  });
  for (const id of ['demo-ada', 'demo-bert', 'demo-chen'])
    batch.push({
      type: 'track',
      userId: id,
      event: 'trial_ends_soon',
      messageId: `seed-${id}-trial-ends`,
      timestamp: iso(now - 5000),
      properties: { daysLeft: 3 },
    });
  batch.push({
    type: 'track',
    userId: 'demo-chen',
    event: 'payment_failed',
    messageId: 'seed-demo-chen-payment',
    timestamp: iso(now - 4000),
    properties: { amount: 12.5, currency: 'EUR' },
  });
  // Something for the churn dashboard: Chen gives up after the failed payment.
  batch.push({
    type: 'track',
    userId: 'demo-chen',
    event: 'subscription_cancelled',
    messageId: 'seed-demo-chen-cancel',
    timestamp: iso(now - 3000),
    properties: { reason: 'payment_failed' },
  });
  return { batch, optedIn: users.filter((u) => u.optIn).map((u) => u.id) };
}

export async function startDemo(options: DemoOptions, logger: Logger): Promise<Demo> {
  const dataDir = path.resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const s of stops.reverse())
      await s().catch((err: unknown) => logger.warn({ err }, 'demo: stop failed'));
  };
  try {
    const sink = createSmtpSink({
      port: 0,
      httpPort: 0,
      dir: path.join(dataDir, 'outbox'),
      logger: logger.child({ component: 'smtp-sink' }),
    });
    await sink.start();
    stops.push(() => sink.stop());
    const demoOverrides = {
      'clickhouse.chdbPath': path.join(dataDir, 'chdb'),
      // The synthetic users cannot open a confirmation email: their signups are consents as given.
      'delivery.doubleOptIn': false,
      ...options.overrides,
      // Analytics in-process: the same tables and SQL as a ClickHouse server.
      'clickhouse.backend': 'chdb',
      'delivery.smtpUrls': [`smtp://127.0.0.1:${sink.port}`],
      // Demo users should see their mail now, whatever the hour where they are.
      'delivery.quietHours': '',
    };
    const configured = loadConfig(undefined, demoOverrides);
    // The demo's /metrics answers the key the page asks for, unless a metrics token is set.
    const config: Readonly<Config> =
      configured.metrics.token === ''
        ? loadConfig(undefined, { ...demoOverrides, 'metrics.token': configured.auth.adminToken })
        : configured;
    const bus = new InMemoryBus(config.kafka.partitions);
    const topicNames = topics(config.kafka.topicPrefix);
    await bus.ensureTopics(internalTopicSpecs(topicNames, config.kafka.partitions));
    const registry = createMetricsRegistry({ process: 'demo' });

    let engine: ReturnType<typeof createMemoryEngine>['service'] | null = null;
    let engineStores: ReturnType<typeof createMemoryEngine>['stores'] | null = null;
    let ruleSet: { current(): RuleSet } | null = null;
    const rules = await openRuleSet(
      config.engine.rulesDir,
      {
        templatesDir: config.delivery.templatesDir,
        messageTypes: loadMessageTypes(config.delivery.messageTypesFile),
        logger,
      },
      () => {
        if (ruleSet) engine?.setRuleSetVersion(ruleSet.current().version);
      },
    );
    stops.push(() => rules.close());
    // Campaigns: one view of the in-memory campaigns topic serves the API, the scheduler and the engine.
    const campaigns = createCampaignTable(
      { topics: topicNames },
      {
        bus,
        publisher: bus.publisher(),
        locks: createMemoryCampaignLocks(),
        logger,
        registry,
      },
    );
    await campaigns.start();
    stops.push(() => campaigns.stop());
    const lists = createMemoryAudienceLists();
    ruleSet = createCampaignRuleSet({
      base: rules.current,
      campaigns,
      logger,
      onSwap: (next) => engine?.setRuleSetVersion(next.version),
    });
    const embedded = createMemoryEngine(
      {
        topicPrefix: config.kafka.topicPrefix,
        groupId: config.engine.groupId,
        timerPollMs: config.engine.timerPollMs,
        partitions: config.kafka.partitions,
      },
      {
        bus,
        ruleSet: ruleSet.current,
        logger,
        registry,
        prepare: campaignViewFreshness(campaigns),
      },
    );
    engine = embedded.service;
    engineStores = embedded.stores;
    await engine.start();
    stops.push(() => engine.stop());
    // Recurring rules (`schedule` triggers) and campaigns fan out from the same in-memory user directory.
    const { service: scheduler, progress } = createMemoryScheduler(schedulerConfigFrom(config), {
      bus,
      ruleSet: rules.current,
      logger,
      registry,
      jobs: (directory) => () =>
        campaignJobs({
          table: campaigns,
          lists,
          directory,
          defaultRate: config.engine.campaignRate,
          logger,
        }),
    });
    await scheduler.start();
    stops.push(() => scheduler.stop());

    // The managed templates store over the in-memory bus, shared by delivery and the API: a
    // version published through the API is what the next send renders.
    const templates = createManagedTemplates(
      {
        dir: config.delivery.templatesDir,
        defaultTimezone: config.delivery.defaultTimezone,
        publishFiles: config.delivery.templatesPublishFiles,
        topics: topicNames,
        watch: true,
      },
      {
        bus,
        publisher: bus.publisher(),
        coordinator: createMemoryCoordinator(),
        logger,
        registry,
      },
    );
    await templates.start();
    stops.push(() => templates.stop());

    // Delivery's claims, consent, caps, delay queue and the in-app inbox live in memory here;
    // production keeps them in Redis with the same semantics (both pass the same store tests).
    const stores = createMemoryDeliveryStores();
    const inapp = { inbox: createMemoryInbox(), live: createMemoryLiveChannel() };
    const providers = createProviders(config, { logger, inapp });
    const delivery = await createDelivery(config, logger, {
      bus,
      stores,
      providers,
      templates,
      metrics: registry,
      inbox: inapp.inbox,
    });
    await delivery.start();
    stops.push(() => delivery.stop());

    // Everything on the bus lands in chDB through the production sink, for the dashboards.
    const analytics = await openAnalytics(config, logger);
    stops.push(() => analytics.close());
    const analyticsSink = createAnalyticsSink(
      { ...sinkConfig(config), flushIntervalMs: 200 },
      { bus, store: analytics, logger, metrics: registry },
    );
    await analyticsSink.start();
    stops.push(() => analyticsSink.stop());

    let generated: ReturnType<typeof createGenerator> | undefined;
    const api = await createApiServer(config, {
      memory: { stores, ...inapp },
      campaigns: { table: campaigns, lists, progress },
      rules: rules.current,
      rulesRejected: rules.rejected,
      users: createUserDirectory(engineStores),
      analytics,
      publisher: bus.publisher(),
      logger,
      metrics: registry,
      templates,
      health: () => ({
        smtpSink: sink.health().ok,
        engine: engine.health().ok,
        delivery: delivery.health().ok,
        analytics: analyticsSink.health().ok,
        ...(generated ? { generator: generated.health().ok } : {}),
      }),
    });
    const apiUrl = await api.listen({ host: config.http.host, port: config.http.apiPort });
    stops.push(() => api.close());
    const ingest = await createIngestServer(config, {
      bus,
      logger,
      metrics: createMetricsRegistry({ defaults: false }),
    });
    const ingestUrl = await ingest.listen({ host: config.http.host, port: config.http.ingestPort });
    stops.push(() => ingest.close());

    // The sample users are seeded as a backend would send them (with their emails): a server key.
    const keys = config.auth.writeKeys.map(parseWriteKeyEntry);
    const writeKey = (keys.find((k) => k.kind === 'server') ?? keys[0])?.key ?? '';
    const clientKey = keys.find((k) => k.kind === 'client')?.key;
    // The sample users and the generator come in through the same requests an app and its
    // backend would make, handed to the servers in process.
    const asApp = async (server: typeof api, what: string, req: HttpRequest) => {
      const res = await server.inject({
        method: req.method,
        url: req.url,
        headers: req.headers,
        payload: req.body,
      });
      const problem = refusal(what, res.statusCode, res.body);
      if (problem) throw problem;
    };
    const optIn = (userId: string, source?: string) =>
      asApp(api, `opt-in for ${userId}`, optInRequest(config.auth.adminToken, userId, source));
    if (options.seed) {
      const { batch, optedIn } = seedBatch(Date.now());
      for (const userId of optedIn) await optIn(userId, 'demo_signup_form');
      await asApp(ingest, 'demo seed: the sample batch', batchRequest(writeKey, batch, new Date()));
    }
    let generator: Demo['generator'];
    if (options.generate) {
      const g = createGenerator(options.generate, {
        postBatch: (batch) => asApp(ingest, 'generator', batchRequest(writeKey, batch, new Date())),
        optIn: (userId) => optIn(userId),
        logger,
      });
      await g.start();
      generated = g;
      const every = options.progress?.everyMs ?? 5000;
      const progress = options.progress
        ? setInterval(
            () =>
              options.progress!.write(
                progressLine(g.stats(), [`${sink.health().messages} emails in the outbox`]),
              ),
            every,
          )
        : undefined;
      stops.push(async () => {
        clearInterval(progress);
        await g.stop();
      });
      const { rate, seed, dayMs } = options.generate;
      generator = { rate, seed, dayMs, stats: () => g.stats() };
    }
    return {
      writeKey,
      ...(clientKey !== undefined ? { clientKey } : {}),
      ...(generator ? { generator } : {}),
      urls: {
        ingest: ingestUrl,
        api: apiUrl,
        openapiIngest: `${ingestUrl}/openapi.json`,
        openapiApi: `${apiUrl}/openapi.json`,
        outbox: `http://127.0.0.1:${sink.httpPort}/messages`,
        smtp: `smtp://127.0.0.1:${sink.port}`,
        metrics: `${apiUrl}/metrics`,
        health: `${apiUrl}/health`,
        admin: `${apiUrl}/`,
        dashboards: `${apiUrl}/dashboards`,
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
