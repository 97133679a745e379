// The generated Grafana boards (deploy/grafana/dashboards/analytics/) answer what the
// product's dashboards page answers: every panel's SQL, with Grafana's macros and variables
// expanded the way the ClickHouse plugin expands them, runs on chDB (a current ClickHouse
// engine, as the compose stack's server is) over the hand-worked datasets, and gives the
// rows the product's own panel gives for the same window, rules and parameters.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChdbStore, type AnalyticsStore } from '../analytics/store.ts';
import { CHURN_WINDOW, RETENTION_WINDOW } from '../test/support/analytics-fixtures.ts';
import { loadFixtures } from '../test/support/dashboards-api.ts';
import { GRAFANA_DASHBOARDS_DIR, GRAFANA_OPTIONS } from './generate-grafana.ts';
import { RULE_VARIABLE } from './grafana.ts';
import { loadDashboards } from './loader.ts';
import { panelContext, runPanel } from './run.ts';

interface Choice {
  from: number;
  to: number;
  /** Empty: "All". */
  rules: string[];
  values: Record<string, string>;
}

/** What Grafana and the ClickHouse plugin make of a panel's SQL before ClickHouse sees it. */
export function expandLikeGrafana(sql: string, c: Choice): string {
  const quoted = c.rules.map((r) => `'${r}'`).join(',');
  const out = sql
    .replace(
      new RegExp(
        `\\$__conditionalAll\\((has\\(\\[\\$\\{${RULE_VARIABLE}:singlequote\\}\\], \\w+\\)), \\$${RULE_VARIABLE}\\)`,
        'g',
      ),
      (_m, condition: string) =>
        c.rules.length === 0
          ? '1=1'
          : condition.replace(`\${${RULE_VARIABLE}:singlequote}`, quoted),
    )
    .replace(/\$\{(\w+):sqlstring\}/g, (_m, name: string) => {
      const v = c.values[name];
      if (v === undefined) throw new Error(`no value for the variable ${name}`);
      return `'${v.replace(/'/g, "''")}'`;
    })
    .replace(/\$__fromTime_ms/g, `fromUnixTimestamp64Milli(${c.from})`)
    .replace(/\$__toTime_ms/g, `fromUnixTimestamp64Milli(${c.to})`);
  if (out.includes('$')) throw new Error(`unexpanded Grafana syntax in: ${out}`);
  return out;
}

const normal = (v: unknown) =>
  typeof v === 'string' && /^-?\d+(\.\d+)?(e-?\d+)?$/.test(v) ? Number(v) : v;

const DAY = 86_400_000;
const ALL = { from: Date.parse('2024-12-01'), to: Date.parse('2025-05-01') };

describe('generated Grafana boards on chDB', () => {
  const database = GRAFANA_OPTIONS.database;
  let store: AnalyticsStore;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lc-chdb-grafana-'));
    store = await createChdbStore({ path: dir });
    await loadFixtures(store, database);
  });
  afterAll(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const choices: (Omit<Choice, 'values'> & { values?: Record<string, string> })[] = [
    { ...ALL, rules: [] },
    { ...ALL, rules: ['r1'] },
    { ...ALL, rules: ['r1', 'r2'] },
    { ...RETENTION_WINDOW, rules: [], values: { period: 'day' } },
    { ...RETENTION_WINDOW, rules: [], values: { period: 'week' } },
    { ...CHURN_WINDOW, rules: [], values: { inactiveDays: '14' } },
    { from: CHURN_WINDOW.from - 30 * DAY, to: CHURN_WINDOW.to, rules: [] },
  ];

  it("gives every panel the rows of the product's own panel", async () => {
    const set = await loadDashboards(new URL('.', import.meta.url).pathname);
    let compared = 0;
    let nonEmpty = 0;
    for (const { spec } of set.dashboards) {
      const board = JSON.parse(
        await readFile(join(GRAFANA_DASHBOARDS_DIR, `${spec.id}.json`), 'utf8'),
      ) as { panels: { title: string; targets: { rawSql: string }[] }[] };
      const defaults = Object.fromEntries(
        Object.entries(spec.parameters ?? {}).map(([k, p]) => [k, String(p.default)]),
      );
      for (const [i, panel] of spec.panels.entries()) {
        const grafana = board.panels[i]!;
        expect(grafana.title).toBe(panel.title);
        for (const choice of choices) {
          const values = Object.fromEntries(
            Object.entries({ ...defaults, ...choice.values }).filter(([k]) => k in defaults),
          );
          const query = {
            from: String(choice.from),
            to: String(choice.to),
            ...(choice.rules.length > 0 ? { ruleIds: choice.rules.join(',') } : {}),
            ...values,
          };
          const product = await runPanel(
            store,
            database,
            panel,
            panelContext(spec, panel, query, choice.to),
          );
          const sql = expandLikeGrafana(grafana.targets[0]!.rawSql, { ...choice, values });
          const rows = await store.query<Record<string, unknown>>(sql);
          const shown = Object.keys(rows[0] ?? {});
          const pick = (r: Record<string, unknown>) =>
            JSON.stringify(Object.fromEntries(shown.map((c) => [c, normal(r[c])])));
          const where = `${spec.id}/${panel.id} ${JSON.stringify(query)}`;
          expect(rows.map(pick).sort(), where).toEqual(product.rows.map(pick).sort());
          // Grafana leaves out only what the product computes in code.
          for (const c of product.columns)
            if (!shown.includes(c) && rows.length > 0)
              expect(['ci_low', 'ci_high', 'p_value', 'saved_low', 'saved_high'], where).toContain(
                c,
              );
          compared++;
          if (rows.length > 0) nonEmpty++;
        }
      }
    }
    expect(compared).toBeGreaterThan(50);
    expect(nonEmpty).toBeGreaterThan(compared / 2);
  });
});
