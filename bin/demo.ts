// `lifecycle demo`: the embedded default. One process: the in-memory bus and engine state,
// the real ingest API, delivery pipeline, tracking/preferences/in-app API and an SMTP sink
// that keeps every email, seeded with sample users, and the analytics sink into chDB with
// the dashboards on the API server. No services: bus, engine state and delivery stores
// are in memory, analytics in chDB. For trying the product and authoring rules; not a
// production mode (nothing survives a restart but the outbox and the analytics tables).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { InMemoryBus, internalTopicSpecs } from '../platform/bus.ts';
import type { Config } from '../platform/config.ts';
import { loadConfig } from '../platform/config.ts';
import { topics } from '../platform/contracts.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createSmtpSink } from '../devtools/smtp-sink.ts';
import { openRuleSet, type RuleSet } from '../rules/index.ts';
import {
  campaignJobs,
  campaignViewFreshness,
  campaignViewGroup,
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
import { createApiServer } from './api.ts';

export interface DemoOptions {
  dataDir: string;
  /** Seed sample users and events (default true). */
  seed: boolean;
  /** Config overrides by dotted path (tests pick free ports with `http.apiPort: 0`). */
  overrides?: Record<string, unknown>;
}

export interface Demo {
  urls: Record<string, string>;
  /** A server write key (a backend's: may set email, plan and the other protected traits). */
  writeKey: string;
  /** A client write key (a browser's: protected traits are dropped), when one is configured. */
  clientKey?: string;
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
    const config: Readonly<Config> = loadConfig(undefined, {
      'clickhouse.chdbPath': path.join(dataDir, 'chdb'),
      ...options.overrides,
      // Analytics in-process: the same tables and SQL as a ClickHouse server.
      'clickhouse.backend': 'chdb',
      'delivery.smtpUrls': [`smtp://127.0.0.1:${sink.port}`],
      // Demo users should see their mail now, whatever the hour where they are.
      'delivery.quietHours': '',
    });
    const bus = new InMemoryBus(config.kafka.partitions);
    const topicNames = topics(config.kafka.topicPrefix);
    await bus.ensureTopics(internalTopicSpecs(topicNames, config.kafka.partitions));
    const registry = createMetricsRegistry({ process: 'demo' });

    let engine: ReturnType<typeof createMemoryEngine>['service'] | null = null;
    let engineStores: ReturnType<typeof createMemoryEngine>['stores'] | null = null;
    let ruleSet: { current(): RuleSet } | null = null;
    const rules = await openRuleSet(
      config.engine.rulesDir,
      { templatesDir: config.delivery.templatesDir, logger },
      () => {
        if (ruleSet) engine?.setRuleSetVersion(ruleSet.current().version);
      },
    );
    stops.push(() => rules.close());
    // Campaigns: one view of the in-memory campaigns topic serves the API, the scheduler and the engine.
    const campaigns = createCampaignTable(
      { topics: topicNames, groupId: campaignViewGroup(topicNames.campaigns) },
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

    // Delivery's claims, consent, caps, delay queue and the in-app inbox live in memory here;
    // production keeps them in Redis with the same semantics (both pass the same store tests).
    const stores = createMemoryDeliveryStores();
    const inapp = { inbox: createMemoryInbox(), live: createMemoryLiveChannel() };
    const providers = createProviders(config, { logger, inapp });
    const delivery = await createDelivery(config, logger, {
      bus,
      stores,
      providers,
      metrics: registry,
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

    const api = await createApiServer(config, {
      memory: { stores, ...inapp },
      campaigns: { table: campaigns, lists, progress },
      rules: rules.current,
      users: createUserDirectory(engineStores),
      analytics,
      publisher: bus.publisher(),
      logger,
      metrics: registry,
      health: () => ({
        smtpSink: sink.health().ok,
        engine: engine.health().ok,
        delivery: delivery.health().ok,
        analytics: analyticsSink.health().ok,
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
    if (options.seed) {
      const { batch, optedIn } = seedBatch(Date.now());
      for (const userId of optedIn) {
        const res = await api.inject({
          method: 'PATCH',
          url: `/v1/users/${encodeURIComponent(userId)}/preferences`,
          headers: { authorization: `Bearer ${config.auth.adminToken}` },
          payload: {
            consents: {
              marketing: {
                email: { granted: true, source: 'demo_signup_form' },
                inapp: { granted: true, source: 'demo_signup_form' },
              },
            },
          },
        });
        if (res.statusCode >= 300)
          throw new Error(`demo seed: opt-in for ${userId} failed: ${res.body}`);
      }
      const res = await ingest.inject({
        method: 'POST',
        url: '/v1/batch',
        headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}` },
        payload: { batch },
      });
      if (res.statusCode >= 300)
        throw new Error(`demo seed: ingest refused the sample batch: ${res.body}`);
    }
    return {
      writeKey,
      ...(clientKey !== undefined ? { clientKey } : {}),
      urls: {
        ingest: ingestUrl,
        api: apiUrl,
        openapiIngest: `${ingestUrl}/openapi.json`,
        openapiApi: `${apiUrl}/openapi.json`,
        outbox: `http://127.0.0.1:${sink.httpPort}/messages`,
        smtp: `smtp://127.0.0.1:${sink.port}`,
        metrics: `${apiUrl}/metrics`,
        health: `${apiUrl}/health`,
        dashboards: `${apiUrl}/dashboards`,
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
