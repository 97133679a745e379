// Writes rules/rule.schema.json, rules/segment.schema.json and rules/message-types.schema.json from the TypeBox schemas, for
// editors (autocomplete, hover docs). Run: npx tsx rules/generate-schemas.ts
// schema.test.ts fails when the committed files are stale.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { MessageTypesFileSchema } from '../platform/message-types.ts';
import { RuleSchema, SegmentSchema, toJsonSchema } from './schema.ts';

export const PUBLISHED_SCHEMAS = {
  'rule.schema.json': RuleSchema,
  'segment.schema.json': SegmentSchema,
  'message-types.schema.json': MessageTypesFileSchema,
} as const;

/** The file's text, formatted as the repository's prettier settings would leave it. */
export async function renderSchema(name: keyof typeof PUBLISHED_SCHEMAS): Promise<string> {
  const file = fileURLToPath(new URL(name, import.meta.url));
  const options = (await resolveConfig(file)) ?? {};
  return format(JSON.stringify(toJsonSchema(PUBLISHED_SCHEMAS[name]), null, 2), {
    ...options,
    filepath: file,
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const name of Object.keys(PUBLISHED_SCHEMAS) as (keyof typeof PUBLISHED_SCHEMAS)[]) {
    const file = fileURLToPath(new URL(name, import.meta.url));
    await writeFile(file, await renderSchema(name));
    console.log(`wrote ${file}`);
  }
}
