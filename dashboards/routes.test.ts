// The dashboards API over app.inject, with a store that records what it is asked: the
// token is required for data (not for the static page), request values are checked
// against the spec and reach ClickHouse only as bound parameters, and a failing query is
// that panel's error.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AnalyticsStore, QueryParams } from '../analytics/store.ts';
import { LifecycleError } from '../platform/errors.ts';
import { adminCredential, setupHttpKit } from '../platform/http.ts';
import { dashboardRoutes } from './routes.ts';

const TOKEN = 'test-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const NOW = Date.UTC(2025, 2, 31, 12);

const spec = {
  id: 'ops',
  title: 'Ops',
  window: { days: 7 },
  parameters: {
    inactiveDays: { type: 'integer', default: 30, minimum: 1, maximum: 365 },
    eventType: { type: 'string', default: 'app_opened', maxLength: 50 },
    period: { type: 'string', default: 'week', enum: ['day', 'week'] },
  },
  panels: [
    {
      id: 'events',
      title: 'Events',
      sql: 'SELECT type, count() AS n FROM $db.events WHERE type = {eventType:String} AND ts_ms >= {from:UInt64} AND ts_ms < {to:UInt64} AND ({allRules:UInt8} = 1 OR has({ruleIds:Array(String)}, type)) GROUP BY type',
      viz: { type: 'table' },
    },
    { id: 'churn', title: 'Churn', query: 'churn', viz: { type: 'number', value: 'inactive' } },
    { id: 'broken', title: 'Broken', sql: 'SELECT nope FROM $db.events', viz: { type: 'table' } },
  ],
};

interface Call {
  sql: string;
  params: QueryParams | undefined;
}

function recordingStore(calls: Call[]): AnalyticsStore {
  return {
    async command() {},
    async insert() {},
    async query<T>(sql: string, params?: QueryParams): Promise<T[]> {
      calls.push({ sql, params });
      if (sql.includes('nope'))
        throw new LifecycleError(
          'LC_ERR_ANALYTICS',
          "analytics query failed: Code: 47. Missing columns: 'nope'",
        );
      if (sql.includes('inactiveBefore')) return [{ users: 10, inactive: 4, cancelled: 1 }] as T[];
      return [{ type: 'app_opened', n: 3 }] as T[];
    },
    async close() {},
  };
}

describe('dashboards routes', () => {
  let app: FastifyInstance;
  let dir: string;
  const calls: Call[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lc-dash-routes-'));
    await writeFile(path.join(dir, 'ops.json'), JSON.stringify(spec));
    await writeFile(
      path.join(dir, 'bad.json'),
      JSON.stringify({
        id: 'bad',
        title: 'Bad',
        panels: [{ id: 'x', title: 'X', query: 'nope', viz: { type: 'table' } }],
      }),
    );
    app = Fastify();
    await setupHttpKit(app, {
      credentials: { staff: adminCredential(TOKEN) },
      openapi: { info: { title: 't', version: '1' } },
    });
    await app.register(dashboardRoutes, {
      dir,
      analytics: async () => ({ store: recordingStore(calls), database: 'lc_dash' }),
      now: () => NOW,
    });
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    calls.length = 0;
  });

  it('serves the page without a token, and no data without the right one', async () => {
    const page = await app.inject({ method: 'GET', url: '/dashboards' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('Admin token');
    for (const url of [
      '/v1/dashboards',
      '/v1/dashboards/ops',
      '/v1/dashboards/ops/panels/events',
    ]) {
      for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }]) {
        const res = await app.inject({ method: 'GET', url, headers });
        expect(res.statusCode, url).toBe(401);
        expect(res.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
      }
    }
    expect(calls).toEqual([]);
  });

  it('lists the dashboards and the errors of the broken specs', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/dashboards', headers: auth });
    expect(res.statusCode).toBe(200);
    const body = res.json() as {
      dashboards: { id: string; panels: { id: string; parameters: string[] }[] }[];
      errors: string[];
    };
    expect(body.dashboards.map((d) => d.id)).toEqual(['ops']);
    expect(body.dashboards[0]!.panels.find((p) => p.id === 'churn')!.parameters).toEqual(
      expect.arrayContaining(['inactiveDays', 'cancelEvent']),
    );
    expect(body.errors).toEqual([
      expect.stringMatching(/bad\.json:\$\.panels\[0\]\.query: unknown built-in query "nope"/),
    ]);
    expect(
      (await app.inject({ method: 'GET', url: '/v1/dashboards/bad', headers: auth })).json(),
    ).toMatchObject({
      code: 'LC_ERR_NOT_FOUND',
      message: expect.stringMatching(/spec errors: .*unknown built-in query/),
    });
  });

  it('binds the window, rules and parameters as query parameters, never into the SQL text', async () => {
    const evil = "x' OR 1=1 --";
    const res = await app.inject({
      method: 'GET',
      url: `/v1/dashboards/ops/panels/events?from=2025-03-01&to=2025-03-08T00:00:00Z&ruleIds=r1,r2&eventType=${encodeURIComponent(evil)}`,
      headers: auth,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      columns: ['type', 'n'],
      rows: [{ type: 'app_opened', n: 3 }],
      from: Date.UTC(2025, 2, 1),
      to: Date.UTC(2025, 2, 8),
      ruleIds: ['r1', 'r2'],
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.sql).toBe(spec.panels[0]!.sql!.replace('$db', 'lc_dash'));
    expect(calls[0]!.sql).not.toContain(evil);
    expect(calls[0]!.params).toEqual({
      eventType: evil,
      from: Date.UTC(2025, 2, 1),
      to: Date.UTC(2025, 2, 8),
      allRules: 0,
      ruleIds: ['r1', 'r2'],
    });
  });

  it('defaults to the last N days of the spec and every rule', async () => {
    const res = await app.inject({
      method: 'GET',
      url: '/v1/dashboards/ops/panels/events',
      headers: auth,
    });
    expect(res.statusCode).toBe(200);
    expect(calls[0]!.params).toMatchObject({
      from: NOW - 7 * 86_400_000,
      to: NOW,
      allRules: 1,
      ruleIds: [''],
      eventType: 'app_opened',
    });
  });

  it('passes dashboard parameters to built-in queries by name', async () => {
    const res = await app.inject({
      method: 'GET',
      url: '/v1/dashboards/ops/panels/churn?to=2025-03-31&inactiveDays=10',
      headers: auth,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      rows: [{ users: 10, inactive: 4, active: 6, inactive_share: 0.4, cancelled: 1 }],
    });
    expect(calls[0]!.params).toMatchObject({
      inactiveBefore: Date.UTC(2025, 2, 21),
      cancelEvent: 'subscription_cancelled',
    });
  });

  it.each([
    ['inactiveDays=0', /parameter inactiveDays: must be at least 1/],
    ['inactiveDays=12abc', /parameter inactiveDays: must be a whole number/],
    ['inactiveDays=1&inactiveDays=2', /parameter inactiveDays: give it once/],
    ['period=month', /parameter period: must be one of "day", "week"/],
    [`eventType=${'x'.repeat(51)}`, /parameter eventType: must be at most 50 characters/],
    [
      'colour=red',
      /unknown parameter colour; this dashboard takes: from, to, ruleIds, inactiveDays, eventType, period/,
    ],
    ['allRules=1', /allRules: follows from ruleIds/],
    ['from=yesterday', /parameter from: expected epoch milliseconds or an ISO 8601 date/],
    ['from=2025-03-10&to=2025-03-01', /the window is empty/],
    ['ruleIds=ok,bad%20id', /parameter ruleIds: "bad id" is not a rule id/],
  ])('refuses %s with 400 and says why', async (qs, message) => {
    const res = await app.inject({
      method: 'GET',
      url: `/v1/dashboards/ops/panels/events?${qs}`,
      headers: auth,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({
      code: 'LC_ERR_BAD_REQUEST',
      message: expect.stringMatching(message),
    });
    expect(calls).toEqual([]);
  });

  it('answers 404 for unknown dashboards and panels, and the failing query for a broken panel', async () => {
    expect(
      (await app.inject({ method: 'GET', url: '/v1/dashboards/nope/panels/events', headers: auth }))
        .statusCode,
    ).toBe(404);
    const panel = await app.inject({
      method: 'GET',
      url: '/v1/dashboards/ops/panels/nope',
      headers: auth,
    });
    expect(panel.statusCode).toBe(404);
    expect(panel.json()).toMatchObject({ message: 'dashboard "ops" has no panel "nope"' });
    const broken = await app.inject({
      method: 'GET',
      url: '/v1/dashboards/ops/panels/broken',
      headers: auth,
    });
    expect(broken.statusCode).toBe(500);
    expect(broken.json()).toEqual({
      code: 'LC_ERR_ANALYTICS',
      message: "analytics query failed: Code: 47. Missing columns: 'nope'",
    });
  });

  it('documents its routes in OpenAPI, the data ones behind the admin token', async () => {
    const doc = app.swagger() as { paths: Record<string, { get: { security?: unknown[] } }> };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/dashboards',
        '/v1/dashboards',
        '/v1/dashboards/{id}',
        '/v1/dashboards/{id}/panels/{panelId}',
      ]),
    );
    expect(doc.paths['/v1/dashboards/{id}/panels/{panelId}']!.get.security).toEqual([
      { adminToken: [] },
    ]);
    expect(doc.paths['/dashboards']!.get.security).toEqual([]);
  });
});
