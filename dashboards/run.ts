// Runs a panel: the page's values (window, rules, parameters) checked strictly against
// the spec, then bound as ClickHouse query parameters; nothing a reader types is pasted
// into SQL text. `$db` is the configured database name (from config, not from requests).
import type { AnalyticsStore } from '../analytics/store.ts';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { BUILTIN_QUERIES, type PanelContext, type ParamValue } from './builtins.ts';
import { panelParameterSpecs, parameterProblem, PLACEHOLDER, STANDARD_PARAMS } from './loader.ts';
import type { DashboardSpec, PanelSpec, ParameterSpec } from './schema.ts';

const DAY_MS = 86_400_000;
export const DEFAULT_WINDOW_DAYS = 30;
// The rules room's id format (rules/schema.ts).
const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;
const MAX_RULES = 100;

export type RequestValues = Record<string, string | string[] | undefined>;

export interface PanelResult {
  columns: string[];
  rows: Record<string, unknown>[];
}

const bad = (message: string) =>
  new LifecycleError(ErrorCodes.BadRequest, message, { status: 400 });

function one(name: string, v: string | string[] | undefined): string | undefined {
  if (Array.isArray(v)) {
    if (v.length > 1) throw bad(`parameter ${name}: give it once`);
    return v[0];
  }
  return v;
}

/** Epoch ms from `1735689600000`, `2025-01-01` (00:00 UTC) or an ISO date-time with a zone. */
export function parseInstant(name: string, text: string): number {
  if (/^\d{1,15}$/.test(text)) return Number(text);
  if (
    /^\d{4}-\d{2}-\d{2}$/.test(text) ||
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(text)
  ) {
    const ms = Date.parse(text.length === 10 ? `${text}T00:00:00Z` : text);
    if (Number.isFinite(ms) && ms >= 0) return ms;
  }
  throw bad(
    `parameter ${name}: expected epoch milliseconds or an ISO 8601 date (2025-01-31) or date-time with a zone (2025-01-31T12:00:00Z), got ${JSON.stringify(text)}`,
  );
}

function parseValue(name: string, spec: ParameterSpec, text: string): ParamValue {
  let value: ParamValue = text;
  if (spec.type === 'integer') {
    if (!/^-?\d{1,15}$/.test(text))
      throw bad(`parameter ${name}: must be a whole number, got ${JSON.stringify(text)}`);
    value = Number(text);
  }
  const problem = parameterProblem(spec, value);
  if (problem) throw bad(`parameter ${name}: ${problem}`);
  return value;
}

/**
 * The values a request asks for, checked against the panel's parameters: unknown names,
 * malformed or out-of-range values are refused with a message naming the parameter.
 */
export function panelContext(
  spec: DashboardSpec,
  panel: PanelSpec,
  query: RequestValues,
  now: number,
): PanelContext {
  const specs = panelParameterSpecs(spec, panel);
  const dashboardNames = Object.keys(spec.parameters ?? {});
  for (const name of Object.keys(query)) {
    if (!(name in STANDARD_PARAMS) && !dashboardNames.includes(name))
      throw bad(
        `unknown parameter ${name}; this dashboard takes: ${['from', 'to', 'ruleIds', ...dashboardNames].join(', ')}`,
      );
  }
  if (query.allRules !== undefined)
    throw bad('parameter allRules: follows from ruleIds, do not send it');
  const toText = one('to', query.to);
  const fromText = one('from', query.from);
  const to = toText === undefined ? now : parseInstant('to', toText);
  const from =
    fromText === undefined
      ? Math.max(0, to - (spec.window?.days ?? DEFAULT_WINDOW_DAYS) * DAY_MS)
      : parseInstant('from', fromText);
  if (from >= to)
    throw bad(
      `the window is empty: from (${new Date(from).toISOString()}) must be before to (${new Date(to).toISOString()})`,
    );
  const rulesRaw =
    query.ruleIds === undefined
      ? []
      : (Array.isArray(query.ruleIds) ? query.ruleIds : [query.ruleIds]).flatMap((s) =>
          s.split(','),
        );
  const ruleIds = [...new Set(rulesRaw.map((s) => s.trim()).filter((s) => s !== ''))];
  if (ruleIds.length > MAX_RULES) throw bad(`parameter ruleIds: at most ${MAX_RULES} rules`);
  for (const r of ruleIds)
    if (!RULE_ID.test(r)) throw bad(`parameter ruleIds: ${JSON.stringify(r)} is not a rule id`);

  const values: Record<string, ParamValue> = {};
  for (const [name, p] of Object.entries(specs)) values[name] = p.default;
  for (const name of dashboardNames) {
    const text = one(name, query[name]);
    if (text !== undefined) values[name] = parseValue(name, specs[name]!, text);
  }
  // The panel's fixed values were checked when the spec was loaded.
  Object.assign(values, panel.params ?? {});
  return { from, to, ruleIds, values };
}

/** Runs one panel with its context; query errors come back as LifecycleError (LC_ERR_ANALYTICS). */
export async function runPanel(
  store: AnalyticsStore,
  database: string,
  panel: PanelSpec,
  ctx: PanelContext,
): Promise<PanelResult> {
  if (panel.query !== undefined) {
    const builtin = BUILTIN_QUERIES[panel.query];
    if (!builtin)
      throw new LifecycleError(ErrorCodes.NotFound, `unknown built-in query ${panel.query}`, {
        status: 404,
      });
    return { columns: Object.keys(builtin.columns), rows: await builtin.run(store, database, ctx) };
  }
  const sql = (panel.sql ?? '').replace(/\$db\b/g, database);
  const bound: Record<string, unknown> = {
    from: ctx.from,
    to: ctx.to,
    // 18.16 cannot type an empty array literal in has(): "all rules" is allRules = 1 with a list that matches none.
    ruleIds: ctx.ruleIds.length > 0 ? ctx.ruleIds : [''],
    allRules: ctx.ruleIds.length > 0 ? 0 : 1,
    ...ctx.values,
  };
  const params: Record<string, unknown> = {};
  for (const m of sql.matchAll(PLACEHOLDER)) params[m[1]!] = bound[m[1]!];
  const rows = await store.query<Record<string, unknown>>(sql, params);
  return { columns: rows[0] ? Object.keys(rows[0]) : [], rows };
}
