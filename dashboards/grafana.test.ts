// How a spec's panel becomes Grafana's SQL: the window, the rule filter and the values,
// and the shapes it refuses with a message that says what to write instead.
import { describe, expect, it } from 'vitest';
import { grafanaDashboard, grafanaPanelSql, GrafanaTranslationError } from './grafana.ts';
import type { DashboardSpec, PanelSpec } from './schema.ts';

const options = { database: 'lifecycle', datasourceUid: 'ch' };
const spec = (
  panels: PanelSpec[],
  parameters: DashboardSpec['parameters'] = {},
): DashboardSpec => ({
  id: 'd',
  title: 'D',
  parameters,
  panels,
});
const panel = (sql: string, params?: PanelSpec['params']): PanelSpec => ({
  id: 'p',
  title: 'P',
  sql,
  viz: { type: 'table' },
  ...(params ? { params } : {}),
});

describe('Grafana SQL of a panel', () => {
  it('turns the window into the time range, the rule filter into the Rules variable and parameters into variables or literals', () => {
    const p = panel(
      'SELECT count() AS n FROM $db.events WHERE ts_ms >= {from:UInt64} AND ts_ms < {to:UInt64} AND ({allRules:UInt8} = 1 OR has({ruleIds:Array(String)}, rule_id)) AND type = {event:String} AND attempt >= {min:UInt32} AND source = {src:String}',
      { src: "it's\\" },
    );
    const sql = grafanaPanelSql(
      spec([p], {
        event: { type: 'string', default: 'x' },
        min: { type: 'integer', default: 1 },
      }),
      p,
      options,
    );
    expect(sql).toBe(
      "SELECT count() AS n FROM lifecycle.events WHERE ts_ms >= toUnixTimestamp64Milli($__fromTime_ms) AND ts_ms < toUnixTimestamp64Milli($__toTime_ms) AND $__conditionalAll(has([${rule:singlequote}], rule_id), $rule) AND type = ${event:sqlstring} AND attempt >= CAST(${min:sqlstring} AS UInt32) AND source = 'it\\'s\\\\'",
    );
  });

  it('refuses the rule parameters in another shape, a value nobody gives, and a parameter named like the Rules variable', () => {
    const odd = panel('SELECT {allRules:UInt8} AS every FROM $db.sends');
    expect(() => grafanaPanelSql(spec([odd]), odd, options)).toThrow(GrafanaTranslationError);
    expect(() => grafanaPanelSql(spec([odd]), odd, options)).toThrow(
      /write it as \(\{allRules:UInt8\} = 1 OR has/,
    );
    const unknown = panel('SELECT 1 FROM $db.sends WHERE rule_id = {who:String}');
    expect(() => grafanaPanelSql(spec([unknown]), unknown, options)).toThrow(
      /\{who:String\} has no value/,
    );
    const clash = panel('SELECT 1 AS one FROM $db.sends');
    expect(() =>
      grafanaDashboard(spec([clash], { rule: { type: 'string', default: '' } }), 'd.json', options),
    ).toThrow(/rename it/);
  });

  it('gives a built-in query its SQL with the columns the page computes, and says which it cannot show', () => {
    const uplift: PanelSpec = {
      id: 'u',
      title: 'Uplift',
      query: 'uplift',
      viz: { type: 'table', columns: ['rule_id', 'uplift', 'ci_low', 'p_value'] },
    };
    const board = grafanaDashboard(spec([uplift]), 'dashboards/d.json', options) as {
      panels: { description: string; transformations: unknown[]; targets: { rawSql: string }[] }[];
      templating: { list: { name: string }[] };
    };
    const [p] = board.panels;
    expect(p!.targets[0]!.rawSql).toMatch(/AS uplift\s+FROM \(SELECT rule_id, holdout/);
    expect(p!.description).toContain('Not shown here: ci_low, p_value');
    expect(p!.transformations[0]).toEqual({
      id: 'filterFieldsByName',
      options: { include: { names: ['rule_id', 'uplift'] } },
    });
    expect(board.templating.list.map((v) => v.name)).toEqual(['rule']);
  });
});
