// Writes dashboards/dashboard.schema.json from the TypeBox schema, for editors
// (autocomplete, hover docs). Run: npx tsx dashboards/generate-schema.ts
// loader.test.ts fails when the committed file is stale.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { DashboardSchema } from './schema.ts';

export const SCHEMA_FILE = fileURLToPath(new URL('dashboard.schema.json', import.meta.url));

/** The file's text, formatted as the repository's prettier settings would leave it. */
export async function renderSchema(): Promise<string> {
  const options = (await resolveConfig(SCHEMA_FILE)) ?? {};
  const doc = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    ...JSON.parse(JSON.stringify(DashboardSchema)),
  };
  return format(JSON.stringify(doc, null, 2), { ...options, filepath: SCHEMA_FILE });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await writeFile(SCHEMA_FILE, await renderSchema());
  console.log(`wrote ${SCHEMA_FILE}`);
}
