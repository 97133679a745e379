// The dashboards over HTTP. The page itself is a static shell (public: it holds no data);
// everything it shows comes from the staff API (role analyst), with a key as a bearer header:
//   GET /dashboards                                   the page
//   GET /v1/dashboards                                every dashboard (id, title, parameters, panels) and the spec errors
//   GET /v1/dashboards/:id                            one spec, with the parameters its panels take
//   GET /v1/dashboards/:id/panels/:panelId?from&to&ruleIds&<parameter>=...   {columns, rows} of one panel
// Panels are fetched one by one, so a failing panel shows its error and the others render.
import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { AnalyticsStore } from '../analytics/store.ts';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import {
  errorResponse,
  inlineElements,
  pageSecurityPolicy,
  requireHttpKit,
} from '../platform/http.ts';
import { BUILTIN_QUERIES } from './builtins.ts';
import {
  formatDashboardError,
  loadDashboards,
  panelParameterSpecs,
  STANDARD_PARAMS,
} from './loader.ts';
import { DEFAULT_WINDOW_DAYS, panelContext, runPanel, type RequestValues } from './run.ts';
import type { DashboardSpec } from './schema.ts';

export interface DashboardRoutesOptions {
  /** The folder of dashboard specs; read again on every request, so edits show at once. */
  dir: string;
  /** The analytics store and the database of the tables (opened on first use). */
  analytics: () => Promise<{ store: AnalyticsStore; database: string }>;
  now?: () => number;
}

/** A failing query is that panel's error: 503 while ClickHouse is unreachable (a retry can help), else 500. */
function panelFailure(err: unknown): unknown {
  if (!(err instanceof LifecycleError) || err.code !== ErrorCodes.Analytics) return err;
  return new LifecycleError(err.code, err.message, {
    status: err.retriable ? 503 : 500,
    retriable: err.retriable,
    cause: err,
  });
}

/** Analysts read dashboards (admins too, as on every staff route). */
const analyst = { auth: { roles: ['analyst'] } } as const;
const tags = ['dashboards'];
/** A dashboard as `describe` gives it (the page draws it without parsing SQL). */
const DashboardSchema = {
  type: 'object',
  required: ['id', 'title', 'panels'],
  additionalProperties: true,
  properties: {
    id: { type: 'string' },
    title: { type: 'string' },
    description: { type: 'string' },
    windowDays: { type: 'integer', description: 'The default window: the last N days.' },
    parameters: {
      type: 'object',
      additionalProperties: true,
      description: 'The parameters its panels take, by name.',
    },
    panels: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: true,
        description: 'id, title, description, query or sql, params, parameters, viz, width.',
      },
    },
  },
} as const;

/** What the page needs to draw a dashboard: no SQL parsing on the client. */
function describe(spec: DashboardSpec) {
  return {
    id: spec.id,
    title: spec.title,
    description: spec.description ?? '',
    windowDays: spec.window?.days ?? DEFAULT_WINDOW_DAYS,
    parameters: spec.parameters ?? {},
    panels: spec.panels.map((p) => ({
      id: p.id,
      title: p.title,
      // A number says what it is in its title; charts and tables get the built-in's explanation.
      description:
        p.description ??
        (p.query !== undefined && p.viz.type !== 'number'
          ? BUILTIN_QUERIES[p.query]?.description
          : undefined) ??
        '',
      query: p.query ?? null,
      sql: p.sql ?? null,
      params: p.params ?? {},
      parameters: Object.keys(panelParameterSpecs(spec, p)),
      viz: p.viz,
      width: p.width ?? 1,
    })),
  };
}

export async function dashboardRoutes(
  app: FastifyInstance,
  opts: DashboardRoutesOptions,
): Promise<void> {
  requireHttpKit(app);
  const page = await readFile(new URL('page.html', import.meta.url), 'utf8');
  // The page runs its own inline script and style, and calls this server's API; nothing else.
  const pagePolicy = pageSecurityPolicy({ ...inlineElements(page), connectSelf: true });
  const now = opts.now ?? Date.now;

  app.get(
    '/dashboards',
    {
      config: { auth: 'public' },
      schema: {
        tags,
        operationId: 'dashboardsPage',
        summary:
          'The dashboards page (static; it asks for a key of the role analyst and calls the API below with it)',
        response: {
          200: {
            description: 'The page (HTML, its own script and style inline).',
            content: { 'text/html': { schema: { type: 'string' } } },
          },
        },
      },
    },
    async (_req, reply) =>
      reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('content-security-policy', pagePolicy)
        .send(page),
  );

  await app.register(async (api) => {
    const find = async (id: string) => {
      const set = await loadDashboards(opts.dir);
      const found = set.dashboards.find((d) => d.spec.id === id);
      if (found) return found.spec;
      const broken = set.errors
        .filter((e) => e.path === '$.id' || e.file.endsWith(`${id}.json`))
        .map(formatDashboardError);
      throw new LifecycleError(
        ErrorCodes.NotFound,
        `no dashboard "${id}"${broken.length ? `; spec errors: ${broken.join('; ')}` : ''}`,
        { status: 404 },
      );
    };

    api.get(
      '/v1/dashboards',
      {
        config: analyst,
        schema: {
          tags,
          operationId: 'listDashboards',
          summary:
            'Every dashboard in the dashboards folder, and the errors of the spec files that do not load',
          response: {
            200: {
              type: 'object',
              required: ['dashboards', 'errors'],
              description: 'The dashboards, and one `file:jsonpath: message` per spec error.',
              properties: {
                dashboards: { type: 'array', items: DashboardSchema },
                errors: { type: 'array', items: { type: 'string' } },
              },
            },
          },
        },
      },
      async () => {
        const set = await loadDashboards(opts.dir);
        return {
          dashboards: set.dashboards.map((d) => describe(d.spec)),
          errors: set.errors.map(formatDashboardError),
        };
      },
    );

    const idParams = {
      type: 'object',
      required: ['id'],
      properties: { id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,63}$' } },
    } as const;
    api.get<{ Params: { id: string } }>(
      '/v1/dashboards/:id',
      {
        config: analyst,
        schema: {
          tags,
          operationId: 'getDashboard',
          summary: 'One dashboard: its parameters and panels (with their SQL)',
          params: idParams,
          response: {
            200: { ...DashboardSchema, description: 'The dashboard.' },
            404: errorResponse(
              'No dashboard with this id; the message lists the errors of a spec file that may be it.',
            ),
          },
        },
      },
      async (req) => describe(await find(req.params.id)),
    );

    api.get<{ Params: { id: string; panelId: string }; Querystring: RequestValues }>(
      '/v1/dashboards/:id/panels/:panelId',
      {
        config: analyst,
        schema: {
          tags,
          operationId: 'getPanelData',
          summary: "One panel's data: {columns, rows}",
          description:
            "The window is [from, to): epoch ms or ISO 8601 (default: the dashboard's last N days up to now). `ruleIds` (repeated or comma-separated) limits rule-based panels; none means every rule. Any parameter the dashboard declares can be given by name; unknown names and values outside a parameter's rules are refused with 400. A panel whose query fails answers 500 (503 when ClickHouse is unreachable) with the error.",
          params: {
            type: 'object',
            required: ['id', 'panelId'],
            properties: {
              id: idParams.properties.id,
              panelId: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,63}$' },
            },
          },
          querystring: {
            type: 'object',
            // The dashboard's own parameters, by name; checked against its spec (one value each).
            additionalProperties: true,
            properties: {
              from: { type: 'string', description: STANDARD_PARAMS.from },
              to: { type: 'string', description: STANDARD_PARAMS.to },
              ruleIds: {
                type: 'array',
                items: { type: 'string' },
                description: 'rule ids (none: every rule)',
              },
            },
          },
          response: {
            200: {
              type: 'object',
              required: ['panel', 'from', 'to', 'columns', 'rows'],
              additionalProperties: true,
              description:
                'The rows of the panel in the window, and the values they were run with.',
              properties: {
                panel: { type: 'string' },
                from: { type: 'integer', description: 'Epoch ms, inclusive.' },
                to: { type: 'integer', description: 'Epoch ms, exclusive.' },
                ruleIds: { type: 'array', items: { type: 'string' } },
                params: { type: 'object', additionalProperties: true },
                columns: { type: 'array', items: { type: 'string' } },
                rows: { type: 'array', items: { type: 'object', additionalProperties: true } },
              },
            },
            400: errorResponse(
              'A parameter the dashboard does not declare, or a value outside its rules; the message names it.',
            ),
            404: errorResponse('No such dashboard, or no such panel in it.'),
            500: errorResponse(
              "The panel's query failed (LC_ERR_ANALYTICS, with ClickHouse's error).",
            ),
            503: errorResponse('ClickHouse is unreachable (LC_ERR_ANALYTICS); retry.'),
          },
        },
      },
      async (req) => {
        const spec = await find(req.params.id);
        const panel = spec.panels.find((p) => p.id === req.params.panelId);
        if (!panel)
          throw new LifecycleError(
            ErrorCodes.NotFound,
            `dashboard "${spec.id}" has no panel "${req.params.panelId}"`,
            { status: 404 },
          );
        const ctx = panelContext(spec, panel, req.query, now());
        const result = await opts
          .analytics()
          .then(({ store, database }) => runPanel(store, database, panel, ctx))
          .catch((err: unknown) => {
            throw panelFailure(err);
          });
        return {
          panel: panel.id,
          from: ctx.from,
          to: ctx.to,
          ruleIds: ctx.ruleIds,
          params: ctx.values,
          ...result,
        };
      },
    );
  });
}
