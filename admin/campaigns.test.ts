// The campaigns API on the in-memory API server: a marketer creates, edits, uploads a list to,
// schedules, stops and cancels campaigns; each refusal is coded and says what to fix; every
// change is in the audit log with the campaign before and after; analysts may only read.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAnalyticsStore, type EngineAnalyticsStore } from '../analytics/store.ts';
import { deliveryRow, ensureSchema, sendRow } from '../analytics/schema.ts';
import { createMemoryApiKeyStore, createMemoryAuditLog, generateToken } from '../access/index.ts';
import type { AuditLog } from '../access/audit-log.ts';
import { createApiServer } from '../bin/api.ts';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import { createMemoryInbox, createMemoryLiveChannel } from '../delivery/inapp/index.ts';
import {
  createMemoryAudienceLists,
  createMemoryCampaignLocks,
  createMemoryProgressStore,
  createCampaignTable,
  type CampaignTable,
} from '../engine/index.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { loadConfig } from '../platform/config.ts';
import { topics } from '../platform/contracts.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import type { Role } from '../platform/http.ts';
import { compile } from '../test/support/scenarios.ts';

const NOW = Date.parse('2026-12-01T10:00:00Z');
const rules = compile(
  [],
  [
    {
      id: 'pro',
      conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
    },
  ],
);

const DATABASE = 'lc_campaigns_api';
const chdbDir = mkdtempSync(path.join(tmpdir(), 'lc-campaigns-chdb-'));
let analytics: EngineAnalyticsStore;
beforeAll(async () => {
  // Analytics in-process (chDB, the demo's engine): the same SQL as a ClickHouse server.
  analytics = await createAnalyticsStore({
    backend: 'chdb',
    chdbPath: chdbDir,
    url: 'http://unused',
    database: DATABASE,
    user: 'default',
    password: '',
  });
  await ensureSchema(analytics, DATABASE, { payloadTtlDays: 30 });
});
afterAll(async () => {
  await analytics?.close();
  rmSync(chdbDir, { recursive: true, force: true });
});

let app: FastifyInstance;
let table: CampaignTable;
let audit: AuditLog;
let lists: ReturnType<typeof createMemoryAudienceLists>;
const tokens = {} as Record<Role, string>;

beforeEach(async () => {
  const config = loadConfig(
    {},
    { 'engine.campaignListMaxRows': 5, 'clickhouse.database': DATABASE },
  );
  const bus = new InMemoryBus(1);
  const t = topics(config.kafka.topicPrefix);
  table = createCampaignTable(
    { topics: t },
    {
      bus,
      publisher: bus.publisher(),
      locks: createMemoryCampaignLocks(),
      logger: silentLogger(),
    },
  );
  await table.start();
  const keys = createMemoryApiKeyStore();
  for (const role of ['marketer', 'analyst', 'support'] as const) {
    tokens[role] = generateToken();
    await keys.put(tokens[role], { name: role, role, expiresAt: null, createdBy: 'test' }, NOW);
  }
  audit = createMemoryAuditLog(() => NOW);
  lists = createMemoryAudienceLists();
  app = await createApiServer(config, {
    memory: {
      stores: createMemoryDeliveryStores(),
      inbox: createMemoryInbox(),
      live: createMemoryLiveChannel(),
    },
    campaigns: { table, lists, progress: createMemoryProgressStore(() => NOW) },
    rules: () => rules,
    access: { keys, audit },
    analytics,
    publisher: bus.publisher(),
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
    now: () => NOW,
  });
});

afterEach(async () => {
  await app?.close();
  await table?.stop();
});

const call = (
  method: 'GET' | 'POST' | 'PATCH' | 'PUT',
  url: string,
  body?: unknown,
  role: Role = 'marketer',
  contentType?: string,
) =>
  app.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${tokens[role]}`,
      ...(contentType ? { 'content-type': contentType } : {}),
    },
    ...(body === undefined ? {} : { payload: body as string }),
  });

const draft = {
  name: 'Friday news',
  audience: { type: 'segment', segment: 'pro' },
  message: { template: 'weekly_digest', channels: ['email'], holdout: 0.1 },
  schedule: { type: 'recurring', cron: '0 10 * * 5', timezone: 'user' },
};

async function create(body: unknown = draft): Promise<string> {
  const res = await call('POST', '/v1/campaigns', body);
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ campaign: { id: string } }>().campaign.id;
}

describe('campaigns API', () => {
  it('creates a draft, schedules it, shows it with its progress, and audits each change', async () => {
    const res = await call('POST', '/v1/campaigns', draft);
    expect(res.statusCode, res.body).toBe(201);
    const created = res.json<{ campaign: Record<string, unknown> }>().campaign;
    expect(created).toMatchObject({
      ...draft,
      state: 'draft',
      revision: 1,
      list: null,
      throttle: null,
      createdAt: '2026-12-01T10:00:00.000Z',
      scheduledAt: null,
    });
    const id = created.id as string;
    expect(id).toMatch(/^cmp_[0-9a-f]{16}$/);
    const scheduled = await call('POST', `/v1/campaigns/${id}/schedule`);
    expect(scheduled.statusCode, scheduled.body).toBe(200);
    expect(scheduled.json()).toMatchObject({
      campaign: { state: 'scheduled', revision: 2, scheduledAt: '2026-12-01T10:00:00.000Z' },
    });
    const got = await call('GET', `/v1/campaigns/${id}`, undefined, 'analyst');
    expect(got.statusCode, got.body).toBe(200);
    expect(got.json()).toMatchObject({
      campaign: { id, state: 'scheduled' },
      progress: { runs: 0, skippedRuns: 0, planned: 0, fannedOut: 0, inProgress: [] },
    });
    const list = await call('GET', '/v1/campaigns?state=scheduled', undefined, 'analyst');
    expect(list.json<{ campaigns: { id: string }[] }>().campaigns.map((c) => c.id)).toEqual([id]);
    expect((await call('GET', '/v1/campaigns?state=draft')).json()).toEqual({ campaigns: [] });
    const entries = (await audit.query({ limit: 10 })).entries.reverse();
    expect(entries.map((e) => [e.action, e.target, e.role])).toEqual([
      ['campaign.create', `campaign:${id}`, 'marketer'],
      ['campaign.schedule', `campaign:${id}`, 'marketer'],
    ]);
    expect(entries[1]).toMatchObject({
      before: { state: 'draft', revision: 1 },
      after: { state: 'scheduled', revision: 2 },
    });
  });

  it('refuses campaigns that do not fit the rules in force, naming the field and the fix', async () => {
    const bad = await call('POST', '/v1/campaigns', {
      ...draft,
      audience: { type: 'segment', segment: 'prp' },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({
      code: 'LC_ERR_BAD_REQUEST',
      field: 'audience.segment',
      message: expect.stringMatching(
        /^audience\.segment: unknown segment "prp" \(did you mean "pro"\?\)/,
      ),
    });
    const union = await call('POST', '/v1/campaigns', { ...draft, schedule: { type: 'daily' } });
    expect(union.statusCode).toBe(400);
    expect(union.json()).toMatchObject({
      field: 'schedule',
      message: expect.stringMatching(
        /must be one of \{"type": "now"\} \| \{"type": "at", "at": \.\.\.\}/,
      ),
    });
    const cron = await call('POST', '/v1/campaigns', {
      ...draft,
      schedule: { type: 'recurring', cron: 'every friday', timezone: 'user' },
    });
    expect(cron.json()).toMatchObject({ field: 'schedule.cron' });
    const past = await create({ ...draft, schedule: { type: 'at', at: '2026-11-30T10:00:00Z' } });
    const scheduling = await call('POST', `/v1/campaigns/${past}/schedule`);
    expect(scheduling.statusCode).toBe(400);
    expect(scheduling.json()).toMatchObject({
      field: 'schedule.at',
      message:
        'schedule.at: 2026-11-30T10:00:00Z has passed: set a future instant, or {"type": "now"}',
    });
    expect((await call('GET', '/v1/campaigns/nope')).json()).toMatchObject({
      code: 'LC_ERR_NOT_FOUND',
      message: 'no campaign "nope": GET /v1/campaigns lists them',
    });
  });

  it('edits drafts and scheduled campaigns at the revision given, and nothing that runs', async () => {
    const id = await create();
    const edited = await call('PATCH', `/v1/campaigns/${id}`, {
      revision: 1,
      name: 'Friday digest',
      throttle: { perSecond: 500 },
    });
    expect(edited.statusCode, edited.body).toBe(200);
    expect(edited.json()).toMatchObject({
      campaign: { name: 'Friday digest', throttle: { perSecond: 500 }, revision: 2 },
    });
    const stale = await call('PATCH', `/v1/campaigns/${id}`, { revision: 1, name: 'Mine' });
    expect(stale.statusCode).toBe(409);
    expect(stale.json()).toMatchObject({
      code: 'LC_ERR_CONFLICT',
      message: expect.stringMatching(
        /is at revision 2, the change was made on revision 1: reload it/,
      ),
    });
    await table.change(id, (cur) => ({ ...cur!, state: 'running' }));
    const running = await call('PATCH', `/v1/campaigns/${id}`, { name: 'Late' });
    expect(running.statusCode).toBe(409);
    expect(running.json().message).toBe(
      `campaign "${id}": cannot edit a running campaign: a running campaign can only be stopped (POST /v1/campaigns/:id/stop)`,
    );
    const cancel = await call('POST', `/v1/campaigns/${id}/cancel`);
    expect(cancel.statusCode).toBe(409);
    const stop = await call('POST', `/v1/campaigns/${id}/stop`, {});
    expect(stop.statusCode, stop.body).toBe(200);
    expect(stop.json()).toMatchObject({
      campaign: { state: 'stopped', endedAt: '2026-12-01T10:00:00.000Z' },
    });
    const again = await call('POST', `/v1/campaigns/${id}/stop`);
    expect(again.json().message).toMatch(/a stopped campaign is final: create a new one/);
    const actions = (await audit.query({ limit: 20 })).entries.map((e) => e.action);
    expect(actions.filter((a) => a === 'campaign.update')).toHaveLength(1);
    expect(actions).toContain('campaign.stop');
  });

  it('takes a list as CSV into a report, and schedules a list campaign only with a list', async () => {
    const id = await create({ ...draft, audience: { type: 'list' } });
    const none = await call('POST', `/v1/campaigns/${id}/schedule`);
    expect(none.statusCode).toBe(400);
    expect(none.json()).toMatchObject({
      field: 'list',
      message: `list: no list uploaded: PUT /v1/campaigns/${id}/audience with a CSV of user ids first`,
    });
    const csv = 'user_id,plan\nu1,pro\nu2,free\nu1,pro\n,pro\nu3,pro\n';
    const up = await call('PUT', `/v1/campaigns/${id}/audience`, csv, 'marketer', 'text/csv');
    expect(up.statusCode, up.body).toBe(200);
    expect(up.json()).toMatchObject({
      report: {
        rows: 5,
        accepted: 3,
        duplicates: 1,
        rejected: 1,
        header: true,
        problems: [{ line: 5, message: 'no user id' }],
      },
      campaign: { list: { rows: 5, accepted: 3, duplicates: 1, rejected: 1 }, revision: 2 },
    });
    expect((await lists.page(id, null, 10)).userIds).toEqual(['u1', 'u2', 'u3']);
    const entry = (await audit.query({ limit: 1 })).entries[0]!;
    expect(entry).toMatchObject({ action: 'campaign.upload', after: { list: { accepted: 3 } } });
    expect(JSON.stringify(entry)).not.toContain('u2');
    // Over LC_CAMPAIGN_LIST_MAX_ROWS (5 here): refused, the stored list kept.
    const big = await call(
      'PUT',
      `/v1/campaigns/${id}/audience`,
      'a\nb\nc\nd\ne\nf\n',
      'marketer',
      'text/csv',
    );
    expect(big.statusCode).toBe(413);
    expect(big.json().message).toMatch(/LC_CAMPAIGN_LIST_MAX_ROWS/);
    const json = await call('PUT', `/v1/campaigns/${id}/audience`, { ids: ['x'] });
    expect(json.statusCode).toBe(415);
    expect((await call('POST', `/v1/campaigns/${id}/schedule`)).statusCode).toBe(200);
    // The list of a scheduled campaign is fixed.
    const late = await call('PUT', `/v1/campaigns/${id}/audience`, 'u9\n', 'marketer', 'text/csv');
    expect(late.statusCode).toBe(409);
    const segmentCampaign = await create();
    const wrong = await call(
      'PUT',
      `/v1/campaigns/${segmentCampaign}/audience`,
      'u1\n',
      'marketer',
      'text/csv',
    );
    expect(wrong.json().message).toMatch(
      /has a segment audience: set its audience to \{"type": "list"\}/,
    );
  });

  it('lets analysts read campaigns but not change them, and support staff neither', async () => {
    const id = await create();
    expect((await call('GET', `/v1/campaigns/${id}`, undefined, 'analyst')).statusCode).toBe(200);
    expect(
      (await call('POST', `/v1/campaigns/${id}/cancel`, undefined, 'analyst')).statusCode,
    ).toBe(403);
    expect((await call('POST', '/v1/campaigns', draft, 'analyst')).statusCode).toBe(403);
    expect((await call('GET', '/v1/campaigns', undefined, 'support')).statusCode).toBe(403);
    const cancelled = await call('POST', `/v1/campaigns/${id}/cancel`);
    expect(cancelled.json()).toMatchObject({ campaign: { state: 'cancelled' } });
  });

  it("counts the campaign's sends and their outcomes in analytics, by send", async () => {
    const id = await create();
    const ruleId = `campaign.${id}`;
    const send = (sendId: string, holdout = false, campaignId = id) =>
      sendRow({
        sendId,
        ruleId: `campaign.${campaignId}`,
        userId: `user-${sendId}`,
        category: 'marketing',
        priority: 0,
        template: 'weekly_digest',
        channels: ['email', 'inapp'],
        variant: null,
        holdout,
        triggeredBy: { eventId: `e-${sendId}`, eventType: 'campaign.member' },
        createdAt: NOW,
        expiresAt: null,
        data: {},
        campaignId,
      });
    const outcome = (sendId: string, status: string, channel = 'email', rule = ruleId) =>
      deliveryRow({
        id: `${sendId}:${channel}:${status}`,
        sendId,
        ruleId: rule,
        userId: `user-${sendId}`,
        channel: channel as 'email',
        status: status as 'sent',
        reason: null,
        provider: null,
        attempt: 1,
        ts: NOW,
        variant: null,
        holdout: false,
      });
    await analytics.insert(`${DATABASE}.sends`, [
      send('s1'),
      send('s1'), // a replay, not merged yet
      send('s2'),
      send('s3'),
      send('s4', true),
      send('other', false, 'cmp_other'),
    ]);
    await analytics.insert(`${DATABASE}.deliveries`, [
      outcome('s1', 'suppressed', 'inapp'),
      outcome('s1', 'sent'),
      outcome('s1', 'delivered'),
      outcome('s2', 'suppressed'),
      outcome('s3', 'deferred'),
      outcome('s3', 'failed'),
      outcome('s4', 'holdout'),
      outcome('other', 'sent', 'email', 'campaign.cmp_other'),
    ]);
    const got = await call('GET', `/v1/campaigns/${id}`);
    expect(got.json().progress.outcomes).toEqual({
      matched: 4,
      holdout: 1,
      sent: 1,
      suppressed: 1,
      failed: 1,
      source: 'analytics',
      asOf: '2026-12-01T10:00:00.000Z',
    });
  });

  it('documents every campaign route in OpenAPI with its roles', async () => {
    const doc = (await app.inject({ url: '/openapi.json' })).json<{
      paths: Record<
        string,
        Record<string, { 'x-roles'?: string[]; tags?: string[]; description?: string }>
      >;
    }>();
    const ops = Object.entries(doc.paths)
      .filter(([p]) => p.startsWith('/v1/campaigns'))
      .flatMap(([p, m]) =>
        Object.entries(m).map(([method, op]) => [`${method} ${p}`, op] as const),
      );
    expect(ops.map(([k]) => k).sort()).toEqual([
      'get /v1/campaigns',
      'get /v1/campaigns/{id}',
      'patch /v1/campaigns/{id}',
      'post /v1/campaigns',
      'post /v1/campaigns/{id}/cancel',
      'post /v1/campaigns/{id}/schedule',
      'post /v1/campaigns/{id}/stop',
      'put /v1/campaigns/{id}/audience',
    ]);
    for (const [k, op] of ops) {
      expect(op.tags, k).toEqual(['campaigns']);
      expect(op.description?.length, k).toBeGreaterThan(20);
      expect(op['x-roles'], k).toEqual(
        k.startsWith('get') ? ['admin', 'marketer', 'analyst'] : ['admin', 'marketer'],
      );
    }
  });
});
