import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { renderSchema, SCHEMA_FILE } from './generate-schema.ts';
import { BUILTIN_QUERIES } from './builtins.ts';
import { checkDashboard, formatDashboardError, loadDashboards } from './loader.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const minimal = (panels: unknown[], extra: Record<string, unknown> = {}) => ({
  id: 'd',
  title: 'D',
  panels,
  ...extra,
});
const errorsOf = (value: unknown) =>
  checkDashboard('d.json', value).errors.map(formatDashboardError);

describe('dashboard specs', () => {
  it('the committed dashboards load without an error, and the published schema is current', async () => {
    const set = await loadDashboards(HERE);
    expect(set.errors.map(formatDashboardError)).toEqual([]);
    expect(set.dashboards.map((d) => d.spec.id)).toEqual([
      'lifecycle',
      'retention-churn',
      'deliverability',
    ]);
    // Every built-in query is on some dashboard.
    const used = new Set(
      set.dashboards.flatMap((d) => d.spec.panels.map((p) => p.query).filter(Boolean)),
    );
    expect([...used].sort()).toEqual(Object.keys(BUILTIN_QUERIES).sort());
    expect(await readFile(SCHEMA_FILE, 'utf8')).toBe(await renderSchema());
  });

  it('reports schema errors as file:jsonpath: message', () => {
    expect(
      errorsOf({
        id: 'Bad Id',
        title: 'x',
        panels: [{ id: 'p', title: 't', query: 'funnel', viz: { type: 'pie' } }],
        colour: 1,
      }),
    ).toEqual(
      expect.arrayContaining([
        'd.json:$.colour: unknown field "colour"',
        expect.stringMatching(/^d\.json:\$\.id: /),
        expect.stringMatching(/^d\.json:\$\.panels\[0\]\.viz\.type: /),
      ]),
    );
    expect(errorsOf({ id: 'd', panels: [] })).toEqual(
      expect.arrayContaining([
        'd.json:$.title: is required',
        expect.stringMatching(/^d\.json:\$\.panels: /),
      ]),
    );
  });

  it('checks what the schema cannot: query or sql, built-in names, columns, parameters, placeholders', () => {
    const errors = errorsOf(
      minimal(
        [
          { id: 'a', title: 'A', viz: { type: 'table' } },
          { id: 'a', title: 'B', query: 'funnel', sql: 'SELECT 1', viz: { type: 'table' } },
          { id: 'c', title: 'C', query: 'funnels', viz: { type: 'table' } },
          {
            id: 'd',
            title: 'D',
            query: 'funnel',
            viz: { type: 'bar', x: 'rule_id', y: ['sends', 'opens'] },
          },
          {
            id: 'e',
            title: 'E',
            query: 'retention',
            params: { period: 'month', colour: 'red' },
            viz: { type: 'line' },
          },
          { id: 'f', title: 'F', sql: 'DROP TABLE $db.events', viz: { type: 'table' } },
          {
            id: 'g',
            title: 'G',
            sql: 'SELECT {nope:String}, {days:String}, {from:String} FROM $db.events; SELECT 1',
            viz: { type: 'table' },
          },
        ],
        {
          parameters: {
            days: { type: 'integer', default: 500, maximum: 365 },
            from: { type: 'string', default: 'x' },
            period: { type: 'integer', default: 1 },
          },
        },
      ),
    );
    expect(errors).toEqual([
      'd.json:$.parameters.days.default: must be at most 365',
      'd.json:$.parameters.from: "from" is given by the page; choose another name',
      'd.json:$.panels[0]: needs "query" (a built-in query) or "sql"',
      'd.json:$.panels[1].id: duplicate panel id "a"',
      'd.json:$.panels[1]: give either "query" or "sql", not both',
      'd.json:$.panels[2].query: unknown built-in query "funnels"; built-in queries: funnel, uplift, deliverability, retention, churn, reengagement',
      'd.json:$.panels[3].viz.y[1]: built-in query funnel has no column "opens"; its columns: rule_id, sends, sent, delivered, opened, clicked, converted, conversion_rate',
      'd.json:$.parameters.period: built-in query retention reads "period" as text',
      // The dashboard's declaration wins for the panel's value; its clash with the built-in is reported above.
      'd.json:$.panels[4].params.period: must be a whole number',
      'd.json:$.panels[4].params.colour: built-in query retention has no parameter "colour"; its parameters: period, periods, signupEvent',
      'd.json:$.panels[4].viz: a line chart needs "x" and "y"',
      'd.json:$.panels[5].sql: must be one SELECT (or WITH ... SELECT) statement',
      'd.json:$.panels[6].sql: must be one statement: no ";" between statements',
      'd.json:$.panels[6].sql: {nope:String}: no parameter "nope"; declare it under "parameters" or give it in the panel\'s "params"',
      'd.json:$.panels[6].sql: {days:String}: "days" is a whole number: bind it as an Int or UInt type',
      'd.json:$.panels[6].sql: {from:String}: from is bound as UInt64',
    ]);
  });

  it('checks a pivot names columns of the built-in and sits on a table', () => {
    expect(
      errorsOf(
        minimal([
          {
            id: 'a',
            title: 'A',
            query: 'retention',
            viz: {
              type: 'table',
              pivot: { row: 'cohort', column: 'week', value: 'share', keep: ['users'] },
            },
          },
          {
            id: 'b',
            title: 'B',
            query: 'retention',
            viz: {
              type: 'bar',
              x: 'cohort',
              y: ['share'],
              pivot: { row: 'cohort', column: 'period', value: 'share' },
            },
          },
        ]),
      ),
    ).toEqual([
      'd.json:$.panels[0].viz.pivot.column: built-in query retention has no column "week"; its columns: cohort, cohort_users, period, active_users, share',
      'd.json:$.panels[0].viz.pivot.keep[0]: built-in query retention has no column "users"; its columns: cohort, cohort_users, period, active_users, share',
      'd.json:$.panels[1].viz.pivot: only a table can pivot',
    ]);
  });

  describe('a folder', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'lc-dashboards-'));
    });
    afterEach(async () => rm(dir, { recursive: true, force: true }));

    it('loads the good files, reports the broken ones with their line, and skips the published schema', async () => {
      const good = minimal([
        { id: 'p', title: 'P', sql: 'SELECT 1 AS one', viz: { type: 'number' } },
      ]);
      await writeFile(path.join(dir, 'a.json'), JSON.stringify(good));
      await writeFile(
        path.join(dir, 'b.json'),
        '{\n  "id": "b",\n  "title": "B"\n  "panels": []\n}\n',
      );
      await writeFile(path.join(dir, 'c.json'), JSON.stringify(good));
      await writeFile(path.join(dir, 'dashboard.schema.json'), '{"not": "a dashboard"}');
      const set = await loadDashboards(dir);
      expect(set.dashboards.map((d) => d.file)).toEqual([path.join(dir, 'a.json')]);
      expect(set.errors.map(formatDashboardError)).toEqual([
        expect.stringMatching(
          new RegExp(
            `^${path.join(dir, 'b.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\$: invalid JSON at line 4, column 3`,
          ),
        ),
        `${path.join(dir, 'c.json')}:$.id: dashboard id "d" is already used by ${path.join(dir, 'a.json')}`,
      ]);
    });

    it('a missing folder is one error, not an exception', async () => {
      const set = await loadDashboards(path.join(dir, 'nope'));
      expect(set.dashboards).toEqual([]);
      expect(set.errors.map(formatDashboardError)).toEqual([
        `${path.join(dir, 'nope')}:$: dashboards folder not found`,
      ]);
    });
  });
});
