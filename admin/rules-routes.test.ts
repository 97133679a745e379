// The rules API on the in-memory API server, over a copy of the example rules: the set in
// force with the file of each rule, a broken file's problems listed while the last good set
// stays, a draft simulated over Segment-style events with its delay fired, drafts refused
// with their JSON path, limits on events, and a backtest over a history in chDB; roles.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createAnalyticsStore, type EngineAnalyticsStore } from '../analytics/store.ts';
import { ensureSchema, eventRow } from '../analytics/schema.ts';
import { createMemoryApiKeyStore, createMemoryAuditLog, generateToken } from '../access/index.ts';
import { createApiServer } from '../bin/api.ts';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import { createMemoryInbox, createMemoryLiveChannel } from '../delivery/inapp/index.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { loadConfig } from '../platform/config.ts';
import type { NormalisedEvent } from '../platform/contracts.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import type { Role } from '../platform/http.ts';

const NOW = Date.parse('2026-12-01T10:00:00Z');
const DAY = 86_400_000;
const DATABASE = 'lc_rules_api';
const EXAMPLES = path.join(import.meta.dirname, '..', 'rules', 'examples');
const chdbDir = mkdtempSync(path.join(tmpdir(), 'lc-rules-chdb-'));
let analytics: EngineAnalyticsStore;

const T0 = Date.parse('2026-11-01T09:00:00Z');
const ev = (
  id: string,
  userId: string,
  type: string,
  ts: number,
  traits?: Record<string, unknown>,
): NormalisedEvent => ({
  id: `rules-api-${id}`,
  userId,
  type,
  ts,
  receivedAt: ts,
  source: 'http:web',
  properties: {},
  ...(traits ? { traits } : {}),
});

beforeAll(async () => {
  analytics = await createAnalyticsStore({
    backend: 'chdb',
    chdbPath: chdbDir,
    url: 'http://unused',
    database: DATABASE,
    user: 'default',
    password: '',
  });
  await ensureSchema(analytics, DATABASE, { payloadTtlDays: 30 });
  // Two trial users sign up; one exports on day 1, so only the other gets the day-3 nudge.
  await analytics.insert(
    `${DATABASE}.events`,
    [
      ev('a-id', 'ua', 'identify', T0, { email: 'ua@example.com', plan: 'trial' }),
      ev('a-reg', 'ua', 'user_registered', T0),
      ev('b-id', 'ub', 'identify', T0 + 1000, { email: 'ub@example.com', plan: 'trial' }),
      ev('b-reg', 'ub', 'user_registered', T0 + 1000),
      ev('b-exp', 'ub', 'export_done', T0 + DAY),
    ].map(eventRow),
  );
});
afterAll(async () => {
  await analytics?.close();
  rmSync(chdbDir, { recursive: true, force: true });
});

let app: FastifyInstance;
let rulesDir: string;
const tokens = {} as Record<Role, string>;

beforeEach(async () => {
  rulesDir = mkdtempSync(path.join(tmpdir(), 'lc-rules-api-'));
  cpSync(EXAMPLES, rulesDir, { recursive: true });
  const config = loadConfig({}, { 'engine.rulesDir': rulesDir, 'clickhouse.database': DATABASE });
  const bus = new InMemoryBus(1);
  const keys = createMemoryApiKeyStore();
  for (const role of ['marketer', 'analyst', 'support'] as const) {
    tokens[role] = generateToken();
    await keys.put(tokens[role], { name: role, role, expiresAt: null, createdBy: 'test' }, NOW);
  }
  // No `rules`: the server opens the folder itself, as `lifecycle run api` does.
  app = await createApiServer(config, {
    memory: {
      stores: createMemoryDeliveryStores(),
      inbox: createMemoryInbox(),
      live: createMemoryLiveChannel(),
    },
    access: { keys, audit: createMemoryAuditLog(() => NOW) },
    analytics,
    publisher: bus.publisher(),
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
    now: () => NOW,
  });
});

afterEach(async () => {
  await app.close();
  rmSync(rulesDir, { recursive: true, force: true });
});

const call = (method: 'GET' | 'POST', url: string, role: Role, payload?: unknown) =>
  app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${tokens[role]}` },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });

const draft = {
  id: 'draft-nudge',
  category: 'marketing',
  trigger: { event: 'Signed Up', delay: '2d' },
  conditions: {
    all: [{ fact: 'stats', path: '$["Report Exported"].count', operator: 'equal', value: 0 }],
  },
  action: { send: { template: 'activation_tip', channels: ['email'] } },
  limits: { oncePerUser: true },
};
const segmentEvents = [
  {
    type: 'identify',
    userId: 'u1',
    traits: { email: 'u1@example.com' },
    timestamp: '2026-11-02T09:00:00Z',
    messageId: 'm1',
  },
  {
    type: 'track',
    event: 'Signed Up',
    userId: 'u1',
    timestamp: '2026-11-02T09:00:00Z',
    messageId: 'm2',
  },
  {
    type: 'track',
    event: 'Signed Up',
    userId: 'u2',
    timestamp: '2026-11-02T10:00:00Z',
    messageId: 'm3',
  },
  {
    type: 'track',
    event: 'Report Exported',
    userId: 'u2',
    timestamp: '2026-11-03T10:00:00Z',
    messageId: 'm4',
  },
];

describe('GET /v1/rules', () => {
  it('lists every rule in force with its file, trigger and action, and no errors', async () => {
    const res = await call('GET', '/v1/rules', 'analyst');
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.errors).toEqual([]);
    expect(body.rejectedAt).toBeNull();
    const day3 = body.rules.find((r: { id: string }) => r.id === 'trial-activation-day3');
    expect(day3).toMatchObject({
      enabled: true,
      category: 'marketing',
      file: 'activation-day3.json',
      triggerSummary: 'user_registered + 3d',
      action: 'send activation_tip via email',
      limits: { oncePerUser: true },
      experiment: { holdout: 0.1 },
      goal: { event: 'subscription_started', within: '7d' },
    });
    expect(body.rules.map((r: { id: string }) => r.id)).toContain('welcome');
  });

  it('shows the problems of a refused file with its JSON path while the last good set stays in force', async () => {
    const before = (await call('GET', '/v1/rules', 'marketer')).json();
    writeFileSync(
      path.join(rulesDir, 'welcome.json'),
      JSON.stringify({
        ...before.rules.find((r: { id: string }) => r.id === 'welcome'),
        trigger: { event: 'x', delay: 'soon' },
      }),
    );
    await vi.waitFor(
      async () => {
        const body = (await call('GET', '/v1/rules', 'marketer')).json();
        expect(body.errors.length).toBeGreaterThan(0);
      },
      { timeout: 5000, interval: 100 },
    );
    const body = (await call('GET', '/v1/rules', 'marketer')).json();
    expect(body.errors).toContainEqual(
      expect.objectContaining({ file: 'welcome.json', path: '$.trigger.delay' }),
    );
    expect(typeof body.rejectedAt).toBe('string');
    expect(body.version).toBe(before.version);
    // Put back as it was: the set in force is the files again, and the problems go.
    cpSync(path.join(EXAMPLES, 'welcome.json'), path.join(rulesDir, 'welcome.json'));
    await vi.waitFor(
      async () => {
        const fixed = (await call('GET', '/v1/rules', 'marketer')).json();
        expect(fixed.errors).toEqual([]);
        expect(fixed.rejectedAt).toBeNull();
      },
      { timeout: 5000, interval: 100 },
    );
  });

  it('one rule with its JSON; an unknown id is a coded 404', async () => {
    const res = await call('GET', '/v1/rules/welcome', 'marketer');
    expect(res.statusCode).toBe(200);
    expect(res.json().json).toMatchObject({ id: 'welcome', trigger: { event: 'user_registered' } });
    const missing = await call('GET', '/v1/rules/nope', 'marketer');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ code: 'LC_ERR_NOT_FOUND' });
  });

  it('admits marketer, analyst and admin only', async () => {
    const res = await call('GET', '/v1/rules', 'support');
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('LC_ERR_ROLE_FORBIDDEN');
  });
});

describe('POST /v1/rules/simulate', () => {
  it('answers the sends of a draft over NDJSON, its delay fired after the last event, with a trace', async () => {
    const res = await call('POST', '/v1/rules/simulate', 'marketer', {
      rule: draft,
      events: segmentEvents.map((e) => JSON.stringify(e)).join('\n') + '\n{oops\n',
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.rule).toBe('draft-nudge');
    expect(body.sends).toHaveLength(1);
    expect(body.sends[0]).toMatchObject({
      ruleId: 'draft-nudge',
      userId: 'u1',
      template: 'activation_tip',
      createdAt: '2026-11-04T09:00:00.000Z',
      line: 0,
    });
    expect(body.users).toEqual([{ userId: 'u1', sends: 1, holdouts: 0 }]);
    expect(body.summary).toMatchObject({ events: 4, timersFired: 2, sends: 1 });
    expect(body.summary.invalid).toEqual([
      { line: 5, reason: expect.stringContaining('not JSON') },
    ]);
    expect(body.trace[1]).toEqual({ line: 2, userId: 'u1', type: 'Signed Up', sends: 0 });
    expect(body.trace[4]).toMatchObject({ line: 5, userId: null, invalid: expect.any(String) });
  });

  it('takes a JSON array, and with `until` before the delay nothing is sent yet', async () => {
    const res = await call('POST', '/v1/rules/simulate', 'marketer', {
      rule: draft,
      events: JSON.stringify(segmentEvents),
      until: '2026-11-03T12:00:00Z',
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().sends).toEqual([]);
    expect(res.json().summary.timersPending).toBe(2);
  });

  it('refuses an invalid draft with each problem at its JSON path', async () => {
    const res = await call('POST', '/v1/rules/simulate', 'marketer', {
      rule: { ...draft, trigger: { event: 'Signed Up', delay: 'two days' } },
      events: [segmentEvents[1]],
    });
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({
      code: 'LC_ERR_RULES_INVALID',
      errors: [expect.objectContaining({ file: 'draft', path: '$.trigger.delay' })],
    });
    const unknownTemplate = await call('POST', '/v1/rules/simulate', 'marketer', {
      rule: { ...draft, action: { send: { template: 'no_such_template', channels: ['email'] } } },
      events: [segmentEvents[1]],
    });
    expect(unknownTemplate.statusCode).toBe(422);
    expect(unknownTemplate.json().errors[0].path).toBe('$.action.send.template');
    const list = await call('POST', '/v1/rules/simulate', 'marketer', {
      rule: [draft],
      events: [],
    });
    expect(list.statusCode).toBe(400);
  });

  it('refuses too many events, a broken JSON array and no events with coded errors', async () => {
    const many = Array.from(
      { length: 20_001 },
      (_, i) => `{"type":"track","event":"x","userId":"u${i}"}`,
    );
    const tooMany = await call('POST', '/v1/rules/simulate', 'marketer', {
      rule: draft,
      events: many.join('\n'),
    });
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json()).toMatchObject({ code: 'LC_ERR_BAD_REQUEST', field: 'events' });
    expect(tooMany.json().message).toContain('at most 20000');
    const broken = await call('POST', '/v1/rules/simulate', 'marketer', {
      rule: draft,
      events: '[{"a":1},',
    });
    expect(broken.statusCode).toBe(400);
    expect(broken.json().message).toContain('not a JSON array');
    const none = await call('POST', '/v1/rules/simulate', 'marketer', {
      rule: draft,
      events: '\n\n',
    });
    expect(none.statusCode).toBe(400);
  });

  it('refuses a body over the size limit with LC_ERR_PAYLOAD_TOO_LARGE', async () => {
    const res = await call('POST', '/v1/rules/simulate', 'marketer', {
      rule: draft,
      events: 'x'.repeat(5 * 1024 * 1024 + 10),
    });
    expect(res.statusCode).toBe(413);
    expect(res.json().code).toBe('LC_ERR_PAYLOAD_TOO_LARGE');
  });

  it('is for marketers and admins: an analyst may not run it', async () => {
    const res = await call('POST', '/v1/rules/simulate', 'analyst', { rule: draft, events: [] });
    expect(res.statusCode).toBe(403);
  });
});

describe('POST /v1/rules/backtest', () => {
  it('replays the stored history for a rule in force and reports its sends in the window', async () => {
    const res = await call('POST', '/v1/rules/backtest', 'marketer', {
      ruleId: 'trial-activation-day3',
      from: '2026-11-01T00:00:00Z',
      to: '2026-11-10T00:00:00Z',
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.draft).toBe(false);
    expect(body.report).toMatchObject({
      rule: 'trial-activation-day3',
      eventsReplayed: 5,
      sends: 1,
    });
    expect(body.sends[0]).toMatchObject({ userId: 'ua', ruleId: 'trial-activation-day3' });
    expect(body.report.live).toEqual({ sends: 0, both: 0, onlyBacktest: 1, onlyLive: 0 });
  });

  it('backtests a draft', async () => {
    const { conditions: _conditions, ...withoutConditions } = draft;
    const ok = await call('POST', '/v1/rules/backtest', 'marketer', {
      rule: { ...withoutConditions, id: 'draft-welcome', trigger: { event: 'user_registered' } },
      from: '2026-11-01T00:00:00Z',
      to: '2026-11-10T00:00:00Z',
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({
      draft: true,
      report: { rule: 'draft-welcome', sends: 2, recipients: 2 },
    });
  });

  it('refuses both or neither of ruleId and rule, bad dates, long windows and unknown rules', async () => {
    const base = { from: '2026-11-01T00:00:00Z', to: '2026-11-10T00:00:00Z' };
    const neither = await call('POST', '/v1/rules/backtest', 'marketer', base);
    expect(neither.statusCode).toBe(400);
    expect(neither.json().field).toBe('ruleId');
    const badDate = await call('POST', '/v1/rules/backtest', 'marketer', {
      ...base,
      ruleId: 'welcome',
      from: 'yesterday',
    });
    expect(badDate.json()).toMatchObject({ code: 'LC_ERR_BAD_REQUEST', field: 'from' });
    const long = await call('POST', '/v1/rules/backtest', 'marketer', {
      ...base,
      ruleId: 'welcome',
      to: '2027-06-01T00:00:00Z',
    });
    expect(long.json()).toMatchObject({ code: 'LC_ERR_BAD_REQUEST', field: 'to' });
    const unknown = await call('POST', '/v1/rules/backtest', 'marketer', {
      ...base,
      ruleId: 'nope',
    });
    expect(unknown.statusCode).toBe(404);
  });
});
