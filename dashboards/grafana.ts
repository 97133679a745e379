// The shipped dashboards as Grafana sees them: each spec (dashboards/*.json) becomes a
// Grafana dashboard on the ClickHouse plugin (grafana-clickhouse-datasource), every panel
// with the SQL the page runs. Written by `npm run grafana:dashboards` into
// deploy/grafana/dashboards/analytics/ and committed; a test regenerates them and fails when
// a spec changed and they were not written again, so the two never drift.
//
// What changes on the way: the page's window becomes Grafana's time range (the plugin's
// `$__fromTime_ms` / `$__toTime_ms`, as epoch ms for the `*_ms` columns); the rule filter
// becomes a multi-value `rule` variable through `$__conditionalAll`; a dashboard parameter
// becomes a variable of the same name; a built-in query becomes the analytics room's own
// SQL with the columns the page adds in code computed over it. Grafana cannot compute the
// confidence intervals and p-values of the uplift and re-engagement panels (the product
// does that in code, analytics/stats.ts): those panels show the groups, rates and uplift,
// and say where the interval is.
import {
  churnSql,
  deliverabilitySql,
  funnelSql,
  reengagementSql,
  retentionSql,
  upliftSql,
} from '../analytics/index.ts';
import { BUILTIN_QUERIES } from './builtins.ts';
import { PLACEHOLDER, STANDARD_PARAMS } from './loader.ts';
import type { DashboardSpec, PanelSpec, ParameterSpec } from './schema.ts';

/** The plugin's id, as GF_INSTALL_PLUGINS installs it and the datasource names its type. */
export const CLICKHOUSE_PLUGIN = 'grafana-clickhouse-datasource';

export interface GrafanaOptions {
  /** The ClickHouse database the tables are in (LC_CLICKHOUSE_DATABASE). */
  database: string;
  /** The uid of the provisioned ClickHouse datasource. */
  datasourceUid: string;
}

/** The Grafana variable of the rule filter. */
export const RULE_VARIABLE = 'rule';
const DAY_MS = 86_400_000;

type Json = Record<string, unknown>;

/**
 * A built-in query as Grafana runs it: the analytics room's SQL (as run with a rule
 * filter), the parameters the product derives in code written as SQL over the others, and
 * the outer SELECT that computes the columns the page adds in code.
 */
interface GrafanaBuiltin {
  sql(database: string): string;
  derived?: Record<string, string>;
  select(inner: string): string;
  /** Columns of the page that only the product computes. */
  notInGrafana?: readonly string[];
}

const ratio = (x: string, n: string) => `if(${n} = 0, NULL, ${x} / ${n})`;
const withRules = { from: 0, to: 0, ruleIds: ['any'] };

/** Treated and holdout arms of (rule_id, holdout, users, <successes>) rows, side by side. */
const armsSelect = (inner: string, n: string, x: string, successes: string) =>
  `SELECT rule_id,
       sumIf(users, holdout = 0) AS treated_${n},
       sumIf(${successes}, holdout = 0) AS treated_${x},
       ${ratio(`treated_${x}`, `treated_${n}`)} AS treated_rate,
       sumIf(users, holdout = 1) AS holdout_${n},
       sumIf(${successes}, holdout = 1) AS holdout_${x},
       ${ratio(`holdout_${x}`, `holdout_${n}`)} AS holdout_rate,
       if(treated_${n} = 0 OR holdout_${n} = 0, NULL, treated_rate - holdout_rate) AS uplift
FROM (${inner})
GROUP BY rule_id
ORDER BY rule_id`;

const GRAFANA_BUILTINS: Record<string, GrafanaBuiltin> = {
  funnel: {
    sql: (db) => funnelSql(db, withRules),
    select: (inner) => `SELECT rule_id, sends, sent, delivered, opened, clicked, converted,
       ${ratio('converted', 'sends')} AS conversion_rate
FROM (${inner})
ORDER BY rule_id`,
  },
  uplift: {
    sql: (db) => upliftSql(db, withRules),
    select: (inner) => armsSelect(inner, 'users', 'converted', 'converters'),
    notInGrafana: ['ci_low', 'ci_high', 'p_value'],
  },
  deliverability: {
    sql: (db) => deliverabilitySql(db, withRules),
    select: (inner) => `SELECT provider, channel, attempted, sent, failed, bounced, complained,
       ${ratio('sent', 'attempted')} AS sent_rate,
       ${ratio('bounced', 'sent')} AS bounce_rate,
       ${ratio('complained', 'sent')} AS complaint_rate
FROM (${inner})
ORDER BY provider, channel`,
  },
  retention: {
    sql: (db) => retentionSql(db),
    derived: { periodDays: `if({period:String} = 'day', 1, 7)` },
    select: (inner) => inner,
  },
  churn: {
    sql: (db) => churnSql(db),
    derived: {
      inactiveBefore: `greatest(0, {to:UInt64} - {inactiveDays:UInt32} * ${DAY_MS})`,
    },
    select: (inner) => `SELECT users, users - inactive AS active, inactive,
       ${ratio('inactive', 'users')} AS inactive_share, cancelled
FROM (${inner})`,
  },
  reengagement: {
    sql: (db) => reengagementSql(db, withRules),
    derived: {
      inactiveMs: `{inactiveDays:UInt32} * ${DAY_MS}`,
      activeFrom: `greatest(0, {from:UInt64} - {inactiveDays:UInt32} * ${DAY_MS})`,
      returnWithinMs: `{returnWithinDays:UInt32} * ${DAY_MS}`,
    },
    select: (inner) => `SELECT *, if(uplift IS NULL, NULL, uplift * treated_at_risk) AS saved
FROM (${armsSelect(inner, 'at_risk', 'came_back', 'returned')})`,
    notInGrafana: ['ci_low', 'ci_high', 'p_value', 'saved_low', 'saved_high'],
  },
};

/** A refusal to translate a spec, naming the file's panel and what to write instead. */
export class GrafanaTranslationError extends Error {
  override readonly name = 'GrafanaTranslationError';
}

const stringLiteral = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/** The page's rule filter, as the plugin applies it: every rule while "All" (or none) is chosen. */
const ruleCondition = (column: string) =>
  `$__conditionalAll(has([\${${RULE_VARIABLE}:singlequote}], ${column}), $${RULE_VARIABLE})`;

/**
 * The SQL of a panel as Grafana runs it. Values come, by name, from the panel's fixed
 * `params`, then the dashboard's variables, then the built-in's defaults, as on the page.
 */
export function grafanaPanelSql(
  spec: DashboardSpec,
  panel: PanelSpec,
  options: Pick<GrafanaOptions, 'database'>,
): string {
  const where = `dashboard ${spec.id}, panel ${panel.id}`;
  const builtin = panel.query === undefined ? undefined : GRAFANA_BUILTINS[panel.query];
  if (panel.query !== undefined && !builtin)
    throw new GrafanaTranslationError(`${where}: no Grafana SQL for built-in query ${panel.query}`);
  let sql = builtin ? builtin.select(builtin.sql(options.database)) : (panel.sql ?? '');
  sql = sql.replace(/\$db\b/g, options.database);
  for (const [name, expression] of Object.entries(builtin?.derived ?? {}))
    sql = sql.replace(new RegExp(`\\{${name}:[^{}]+\\}`, 'g'), `(${expression})`);

  // The rule filter, in the two shapes the panels and the analytics room write it.
  sql = sql
    .replace(
      /\(\s*\{allRules:U?Int\d+\}\s*=\s*1\s+OR\s+has\(\s*\{ruleIds:Array\(String\)\}\s*,\s*([A-Za-z_]\w*)\s*\)\s*\)/g,
      (_m, column: string) => ruleCondition(column),
    )
    .replace(
      /has\(\s*\{ruleIds:Array\(String\)\}\s*,\s*([A-Za-z_]\w*)\s*\)/g,
      (_m, column: string) => ruleCondition(column),
    );

  const builtinParams = panel.query ? (BUILTIN_QUERIES[panel.query]?.params ?? {}) : {};
  // `{name:Type}`, not the `${rule:singlequote}` of Grafana's variables written above.
  const placeholder = new RegExp(`(?<!\\$)${PLACEHOLDER.source}`, 'g');
  return sql.replace(placeholder, (_m, name: string, type: string) => {
    const t = type.trim();
    if (name === 'from') return 'toUnixTimestamp64Milli($__fromTime_ms)';
    if (name === 'to') return 'toUnixTimestamp64Milli($__toTime_ms)';
    if (name in STANDARD_PARAMS)
      throw new GrafanaTranslationError(
        `${where}: {${name}:${type}} outside the rule filter; write it as ({allRules:UInt8} = 1 OR has({ruleIds:Array(String)}, rule_id))`,
      );
    const fixed = panel.params?.[name];
    const declared = spec.parameters?.[name];
    const fallback = builtinParams[name]?.default;
    const value =
      fixed !== undefined
        ? typeof fixed === 'number'
          ? String(fixed)
          : stringLiteral(fixed)
        : declared
          ? `\${${name}:sqlstring}`
          : fallback !== undefined
            ? typeof fallback === 'number'
              ? String(fallback)
              : stringLiteral(fallback)
            : undefined;
    if (value === undefined)
      throw new GrafanaTranslationError(`${where}: {${name}:${type}} has no value`);
    return t === 'String' ? value : `CAST(${value} AS ${t})`;
  });
}

const UNIT: Record<string, Json> = {
  percent: { unit: 'percentunit', decimals: 1 },
  integer: { decimals: 0 },
  number: { decimals: 2 },
  text: {},
};

function fieldConfig(panel: PanelSpec): Json {
  const overrides = Object.entries(panel.viz.format ?? {}).map(([column, format]) => ({
    matcher: { id: 'byName', options: column },
    properties: Object.entries(UNIT[format] ?? {}).map(([id, value]) => ({ id, value })),
  }));
  return { defaults: {}, overrides: overrides.filter((o) => o.properties.length > 0) };
}

/** Keeps only these columns, in this order. */
const onlyColumns = (columns: readonly string[]): Json[] => [
  { id: 'filterFieldsByName', options: { include: { names: [...columns] } } },
  { id: 'organize', options: { indexByName: Object.fromEntries(columns.map((c, i) => [c, i])) } },
];

function visualisation(panel: PanelSpec, hidden: readonly string[]): Json {
  const viz = panel.viz;
  switch (viz.type) {
    case 'number':
      return {
        type: 'stat',
        options: {
          reduceOptions: {
            values: false,
            calcs: ['firstNotNull'],
            ...(viz.value ? { fields: `/^${viz.value}$/` } : {}),
          },
          colorMode: 'none',
          graphMode: 'none',
          textMode: 'value',
        },
      };
    case 'line':
      return {
        type: 'timeseries',
        options: { legend: { displayMode: 'list', placement: 'bottom', showLegend: true } },
        transformations: viz.x && viz.y ? onlyColumns([viz.x, ...viz.y]) : [],
      };
    case 'bar':
      return {
        type: 'barchart',
        options: {
          ...(viz.x ? { xField: viz.x } : {}),
          legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
        },
        transformations: viz.x && viz.y ? onlyColumns([viz.x, ...viz.y]) : [],
      };
    case 'table': {
      const transformations: Json[] = [];
      if (viz.pivot)
        transformations.push({
          id: 'groupingToMatrix',
          options: {
            rowField: viz.pivot.row,
            columnField: viz.pivot.column,
            valueField: viz.pivot.value,
          },
        });
      else if (viz.columns)
        transformations.push(...onlyColumns(viz.columns.filter((c) => !hidden.includes(c))));
      return { type: 'table', options: { showHeader: true }, transformations };
    }
  }
}

const HEIGHT: Record<string, number> = { number: 5, table: 9, bar: 9, line: 9 };

function templating(spec: DashboardSpec, usesRules: boolean, options: GrafanaOptions): Json[] {
  const variables: Json[] = [];
  if (usesRules)
    variables.push({
      name: RULE_VARIABLE,
      label: 'Rules',
      type: 'query',
      datasource: { type: CLICKHOUSE_PLUGIN, uid: options.datasourceUid },
      query: {
        editorType: 'sql',
        rawSql: `SELECT DISTINCT rule_id FROM ${options.database}.sends ORDER BY rule_id`,
      },
      definition: `SELECT DISTINCT rule_id FROM ${options.database}.sends ORDER BY rule_id`,
      refresh: 2,
      multi: true,
      includeAll: true,
      current: { text: ['All'], value: ['$__all'] },
      sort: 1,
    });
  for (const [name, p] of Object.entries(spec.parameters ?? {})) {
    if (name === RULE_VARIABLE)
      throw new GrafanaTranslationError(
        `dashboard ${spec.id}: parameter "${name}" is the name of Grafana's rule variable; rename it`,
      );
    variables.push(variable(name, p));
  }
  return variables;
}

function variable(name: string, p: ParameterSpec): Json {
  const text = String(p.default);
  const current = { text, value: text };
  const label = p.label ?? name;
  if (p.type === 'string' && p.enum)
    return {
      name,
      label,
      type: 'custom',
      query: p.enum.join(','),
      current,
      options: p.enum.map((v) => ({ text: v, value: v, selected: v === p.default })),
    };
  return { name, label, type: 'textbox', query: text, current, options: [current] };
}

/**
 * One spec as a Grafana dashboard (JSON model), panels in the page's order, two per row;
 * `source` is the spec's file, named in the description.
 */
export function grafanaDashboard(
  spec: DashboardSpec,
  source: string,
  options: GrafanaOptions,
): Json {
  const datasource = { type: CLICKHOUSE_PLUGIN, uid: options.datasourceUid };
  const panels: Json[] = [];
  let x = 0;
  let y = 0;
  let rowHeight = 0;
  let usesRules = false;
  for (const [i, panel] of spec.panels.entries()) {
    const rawSql = grafanaPanelSql(spec, panel, options);
    usesRules ||= rawSql.includes(`$${RULE_VARIABLE}`);
    const w = panel.width === 2 ? 24 : 12;
    const h = HEIGHT[panel.viz.type] ?? 9;
    if (x + w > 24) {
      x = 0;
      y += rowHeight;
      rowHeight = 0;
    }
    const builtin = panel.query ? GRAFANA_BUILTINS[panel.query] : undefined;
    const hidden = builtin?.notInGrafana ?? [];
    const shownHidden = (
      panel.viz.columns ?? Object.keys(BUILTIN_QUERIES[panel.query ?? '']?.columns ?? {})
    ).filter((c) => hidden.includes(c));
    const description = [
      panel.description ?? (panel.query ? BUILTIN_QUERIES[panel.query]?.description : undefined),
      shownHidden.length > 0
        ? `Not shown here: ${shownHidden.join(', ')}, which the product computes in code; see this panel on the product's dashboards page (/dashboards#${spec.id}).`
        : undefined,
    ]
      .filter(Boolean)
      .join(' ');
    const { type, options: vizOptions, transformations } = visualisation(panel, hidden);
    panels.push({
      id: i + 1,
      type,
      title: panel.title,
      ...(description ? { description } : {}),
      gridPos: { x, y, w, h },
      datasource,
      targets: [{ refId: 'A', datasource, editorType: 'sql', format: 1, rawSql }],
      fieldConfig: fieldConfig(panel),
      options: vizOptions,
      ...(transformations && (transformations as Json[]).length > 0 ? { transformations } : {}),
    });
    x += w;
    rowHeight = Math.max(rowHeight, h);
  }
  return {
    uid: `lifecycle-${spec.id}`,
    title: spec.title,
    description: `${spec.description ? `${spec.description} ` : ''}Generated from ${source} (npm run grafana:dashboards): edit that file, not this dashboard.`,
    tags: ['lifecycle', 'analytics'],
    editable: false,
    schemaVersion: 39,
    time: { from: `now-${spec.window?.days ?? 30}d`, to: 'now' },
    timezone: 'utc',
    templating: { list: templating(spec, usesRules, options) },
    panels,
  };
}
