// Writes the Grafana dashboards of the shipped specs (dashboards/*.json) into
// deploy/grafana/dashboards/analytics/. Run: npm run grafana:dashboards
// test/grafana.test.ts fails when the committed files differ from what this writes.
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { grafanaDashboard, type GrafanaOptions } from './grafana.ts';
import { formatDashboardError, loadDashboards } from './loader.ts';

export const SPECS_DIR = fileURLToPath(new URL('.', import.meta.url));
export const GRAFANA_DASHBOARDS_DIR = fileURLToPath(
  new URL('../deploy/grafana/dashboards/analytics/', import.meta.url),
);
/** The database of docker-compose.yml (LC_CLICKHOUSE_DATABASE) and the provisioned datasource's uid. */
export const GRAFANA_OPTIONS: GrafanaOptions = {
  database: 'lifecycle',
  datasourceUid: 'lifecycle-clickhouse',
};

/** File name -> text of every generated dashboard, formatted as prettier leaves JSON. */
export async function renderGrafanaDashboards(
  options: GrafanaOptions = GRAFANA_OPTIONS,
): Promise<Map<string, string>> {
  const set = await loadDashboards(SPECS_DIR);
  if (set.errors.length > 0)
    throw new Error(
      `fix the dashboard specs first:\n${set.errors.map(formatDashboardError).join('\n')}`,
    );
  const out = new Map<string, string>();
  for (const { file, spec } of set.dashboards) {
    const name = `${spec.id}.json`;
    const target = join(GRAFANA_DASHBOARDS_DIR, name);
    const prettier = (await resolveConfig(target)) ?? {};
    const model = grafanaDashboard(spec, `dashboards/${basename(file)}`, options);
    out.set(name, await format(JSON.stringify(model), { ...prettier, filepath: target }));
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = await renderGrafanaDashboards();
  await mkdir(GRAFANA_DASHBOARDS_DIR, { recursive: true });
  // A spec that was removed takes its Grafana dashboard with it.
  for (const old of await readdir(GRAFANA_DASHBOARDS_DIR))
    if (old.endsWith('.json') && !files.has(old)) await rm(join(GRAFANA_DASHBOARDS_DIR, old));
  for (const [name, text] of files) await writeFile(join(GRAFANA_DASHBOARDS_DIR, name), text);
  console.log(`wrote ${[...files.keys()].join(', ')} in ${GRAFANA_DASHBOARDS_DIR}`);
}
