// Reads dashboard specs (dashboards/*.json) and checks them the way rules/ checks rules:
// every problem reported as `file:jsonpath: message`. A broken file is reported and
// skipped; the other dashboards still load.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { BUILTIN_QUERIES } from './builtins.ts';
import {
  DashboardSchema,
  type DashboardSpec,
  type ParameterSpec,
  type PanelSpec,
} from './schema.ts';

export interface DashboardError {
  file: string;
  /** JSONPath of the offending value, `$` for the whole file. */
  path: string;
  message: string;
}

export interface LoadedDashboard {
  file: string;
  spec: DashboardSpec;
}

export interface DashboardSet {
  dashboards: LoadedDashboard[];
  errors: DashboardError[];
}

export const formatDashboardError = (e: DashboardError) => `${e.file}:${e.path}: ${e.message}`;

/** Names every panel can use without declaring them. */
export const STANDARD_PARAMS = {
  from: 'start of the window, epoch ms (inclusive)',
  to: 'end of the window, epoch ms (exclusive)',
  ruleIds: "the rules chosen on the page; [''] when none is (then allRules = 1)",
  allRules: '1 when no rule is chosen (every rule), else 0',
} as const;
const STANDARD_TYPES: Record<keyof typeof STANDARD_PARAMS, RegExp> = {
  from: /^U?Int64$/,
  to: /^U?Int64$/,
  ruleIds: /^Array\(String\)$/,
  allRules: /^U?Int(8|16|32|64)$/,
};

/** `{name:Type}` placeholders of a SQL text. */
export const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}/g;

export function jsonPath(keys: readonly (string | number)[]): string {
  let out = '$';
  for (const k of keys) {
    if (typeof k === 'number' || /^[0-9]+$/.test(k)) out += `[${k}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k)) out += `.${k}`;
    else out += `[${JSON.stringify(k)}]`;
  }
  return out;
}

const pointerKeys = (p: string) =>
  p === ''
    ? []
    : p
        .slice(1)
        .split('/')
        .map((k) => k.replaceAll('~1', '/').replaceAll('~0', '~'));

/** Where JSON.parse stopped, as line and column, when its message says. */
function syntaxMessage(text: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const at = /position (\d+)/.exec(message);
  if (!at) return `invalid JSON: ${message}`;
  const before = text.slice(0, Number(at[1]));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return `invalid JSON at line ${line}, column ${column}: ${message.replace(/ in JSON at position \d+.*$/, '')}`;
}

/**
 * Checks a value against a parameter's rules; returns the problem in words or null.
 * Used for spec defaults, panel values and the page's requests alike.
 */
export function parameterProblem(spec: ParameterSpec, value: unknown): string | null {
  if (spec.type === 'integer') {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) return 'must be a whole number';
    if (spec.minimum !== undefined && value < spec.minimum)
      return `must be at least ${spec.minimum}`;
    if (spec.maximum !== undefined && value > spec.maximum)
      return `must be at most ${spec.maximum}`;
    return null;
  }
  if (typeof value !== 'string') return 'must be a string';
  if (value.length > (spec.maxLength ?? 200))
    return `must be at most ${spec.maxLength ?? 200} characters`;
  if (spec.enum && !spec.enum.includes(value))
    return `must be one of ${spec.enum.map((v) => JSON.stringify(v)).join(', ')}`;
  if (spec.pattern !== undefined && !new RegExp(`^(?:${spec.pattern})$`).test(value))
    return `must match ${spec.pattern}`;
  return null;
}

/** The ClickHouse types a parameter of this kind may be bound as. */
const typeFits = (kind: 'integer' | 'string', chType: string) =>
  kind === 'integer'
    ? /^U?Int(8|16|32|64)$/.test(chType.trim())
    : /^(String|LowCardinality\(String\))$/.test(chType.trim());

/** The parameters a panel sees: the built-in's defaults, then the dashboard's, by name. */
export function panelParameterSpecs(
  spec: DashboardSpec,
  panel: PanelSpec,
): Record<string, ParameterSpec> {
  const builtin = panel.query !== undefined ? BUILTIN_QUERIES[panel.query] : undefined;
  return { ...(builtin?.params ?? {}), ...(spec.parameters ?? {}) };
}

function checkSql(
  sql: string,
  at: (string | number)[],
  known: Record<string, ParameterSpec>,
  panel: PanelSpec,
  push: (keys: (string | number)[], m: string) => void,
): void {
  const body = sql.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, ' ').trim();
  if (!/^(SELECT|WITH)\b/i.test(body))
    push(at, 'must be one SELECT (or WITH ... SELECT) statement');
  if (/;\s*\S/.test(body)) push(at, 'must be one statement: no ";" between statements');
  for (const m of sql.matchAll(PLACEHOLDER)) {
    const [, name = '', type = ''] = m;
    if (name in STANDARD_TYPES) {
      if (!STANDARD_TYPES[name as keyof typeof STANDARD_TYPES].test(type.trim()))
        push(
          at,
          `{${name}:${type}}: ${name} is bound as ${name === 'ruleIds' ? 'Array(String)' : name === 'allRules' ? 'UInt8' : 'UInt64'}`,
        );
      continue;
    }
    const fixed = panel.params?.[name];
    const spec = known[name];
    const kind =
      spec?.type ??
      (fixed === undefined ? undefined : typeof fixed === 'number' ? 'integer' : 'string');
    if (kind === undefined)
      push(
        at,
        `{${name}:${type}}: no parameter "${name}"; declare it under "parameters" or give it in the panel's "params"`,
      );
    else if (!typeFits(kind, type))
      push(
        at,
        `{${name}:${type}}: "${name}" is ${kind === 'integer' ? 'a whole number: bind it as an Int or UInt type' : 'text: bind it as String'}`,
      );
  }
}

/** Checks one parsed file; returns the spec when it has no error. */
export function checkDashboard(
  file: string,
  value: unknown,
): { spec: DashboardSpec | null; errors: DashboardError[] } {
  const errors: DashboardError[] = [];
  const push = (keys: (string | number)[], message: string) =>
    errors.push({ file, path: jsonPath(keys), message });
  const seen = new Set<string>();
  for (const e of Value.Errors(DashboardSchema, value)) {
    const keys = pointerKeys(e.path);
    const where = jsonPath(keys);
    if (seen.has(where)) continue;
    seen.add(where);
    if (e.message === 'Expected required property') push(keys, 'is required');
    else if (e.message === 'Unexpected property')
      push(keys, `unknown field "${String(keys[keys.length - 1])}"`);
    else push(keys, e.message.charAt(0).toLowerCase() + e.message.slice(1));
  }
  if (errors.length > 0) return { spec: null, errors };
  const spec = value as DashboardSpec;

  for (const [name, p] of Object.entries(spec.parameters ?? {})) {
    if (name in STANDARD_PARAMS)
      push(['parameters', name], `"${name}" is given by the page; choose another name`);
    if (p.type === 'string' && p.pattern !== undefined) {
      try {
        new RegExp(p.pattern);
      } catch (err) {
        push(
          ['parameters', name, 'pattern'],
          `not a regular expression: ${(err as Error).message}`,
        );
        continue;
      }
    }
    if (
      p.type === 'integer' &&
      p.minimum !== undefined &&
      p.maximum !== undefined &&
      p.minimum > p.maximum
    )
      push(['parameters', name], 'minimum is above maximum');
    const problem = parameterProblem(p, p.default);
    if (problem) push(['parameters', name, 'default'], problem);
  }

  const panelIds = new Set<string>();
  spec.panels.forEach((panel, i) => {
    const at = ['panels', i];
    if (panelIds.has(panel.id)) push([...at, 'id'], `duplicate panel id "${panel.id}"`);
    panelIds.add(panel.id);
    if ((panel.query === undefined) === (panel.sql === undefined)) {
      push(
        at,
        panel.query === undefined
          ? 'needs "query" (a built-in query) or "sql"'
          : 'give either "query" or "sql", not both',
      );
      return;
    }
    const builtin = panel.query !== undefined ? BUILTIN_QUERIES[panel.query] : undefined;
    if (panel.query !== undefined && !builtin) {
      push(
        [...at, 'query'],
        `unknown built-in query "${panel.query}"; built-in queries: ${Object.keys(BUILTIN_QUERIES).join(', ')}`,
      );
      return;
    }
    const known = panelParameterSpecs(spec, panel);
    if (builtin) {
      for (const [name, own] of Object.entries(builtin.params)) {
        const declared = spec.parameters?.[name];
        if (declared && declared.type !== own.type)
          push(
            ['parameters', name],
            `built-in query ${panel.query} reads "${name}" as ${own.type === 'integer' ? 'a whole number' : 'text'}`,
          );
      }
    }
    for (const [name, v] of Object.entries(panel.params ?? {})) {
      if (name in STANDARD_PARAMS) {
        push([...at, 'params', name], `"${name}" is given by the page`);
        continue;
      }
      const p = known[name];
      if (!p) {
        if (builtin)
          push(
            [...at, 'params', name],
            `built-in query ${panel.query} has no parameter "${name}"${Object.keys(builtin.params).length ? `; its parameters: ${Object.keys(builtin.params).join(', ')}` : ''}`,
          );
        continue;
      }
      const problem = parameterProblem(p, v);
      if (problem) push([...at, 'params', name], problem);
    }
    if (panel.sql !== undefined) checkSql(panel.sql, [...at, 'sql'], known, panel, push);

    const viz = panel.viz;
    if ((viz.type === 'bar' || viz.type === 'line') && (viz.x === undefined || viz.y === undefined))
      push([...at, 'viz'], `a ${viz.type} chart needs "x" and "y"`);
    if (viz.pivot && viz.type !== 'table') push([...at, 'viz', 'pivot'], 'only a table can pivot');
    if (builtin) {
      const columns = Object.keys(builtin.columns);
      const check = (col: string, keys: (string | number)[]) => {
        if (!columns.includes(col))
          push(
            [...at, 'viz', ...keys],
            `built-in query ${panel.query} has no column "${col}"; its columns: ${columns.join(', ')}`,
          );
      };
      if (viz.x !== undefined) check(viz.x, ['x']);
      viz.y?.forEach((c, j) => check(c, ['y', j]));
      if (viz.value !== undefined) check(viz.value, ['value']);
      viz.columns?.forEach((c, j) => check(c, ['columns', j]));
      for (const c of Object.keys(viz.format ?? {})) check(c, ['format', c]);
      if (viz.pivot) {
        for (const k of ['row', 'column', 'value'] as const) check(viz.pivot[k], ['pivot', k]);
        viz.pivot.keep?.forEach((c, j) => check(c, ['pivot', 'keep', j]));
      }
    }
  });
  return { spec: errors.length === 0 ? spec : null, errors };
}

// The published JSON Schema sits next to the dashboards; it is not one.
const isSpecFile = (name: string) => name.endsWith('.json') && !name.endsWith('.schema.json');

/** Loads every `*.json` of the folder; broken files are reported and left out. */
export async function loadDashboards(dir: string): Promise<DashboardSet> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isFile() && isSpecFile(e.name))
      .map((e) => e.name)
      .sort();
  } catch {
    return {
      dashboards: [],
      errors: [{ file: dir, path: '$', message: 'dashboards folder not found' }],
    };
  }
  const dashboards: LoadedDashboard[] = [];
  const errors: DashboardError[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const text = (await readFile(file, 'utf8')).replace(/^\uFEFF/, '');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      errors.push({ file, path: '$', message: syntaxMessage(text, err) });
      continue;
    }
    const checked = checkDashboard(file, value);
    errors.push(...checked.errors);
    if (!checked.spec) continue;
    const other = dashboards.find((d) => d.spec.id === checked.spec!.id);
    if (other) {
      errors.push({
        file,
        path: '$.id',
        message: `dashboard id "${checked.spec.id}" is already used by ${other.file}`,
      });
      continue;
    }
    dashboards.push({ file, spec: checked.spec });
  }
  dashboards.sort(
    (a, b) =>
      (a.spec.order ?? 100) - (b.spec.order ?? 100) || a.spec.title.localeCompare(b.spec.title),
  );
  return { dashboards, errors };
}
