import { readFileSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { Ajv } from 'ajv';
import { renderSchema, PUBLISHED_SCHEMAS } from './generate-schemas.ts';

const here = (p: string) => new URL(p, import.meta.url);

async function examples(folder: string): Promise<unknown[]> {
  const names = (await readdir(here(folder))).filter((n) => n.endsWith('.json'));
  const out: unknown[] = [];
  for (const name of names) {
    const parsed = JSON.parse(await readFile(here(`${folder}/${name}`), 'utf8')) as unknown;
    out.push(...(Array.isArray(parsed) ? parsed : [parsed]));
  }
  return out;
}

describe('published JSON Schemas', () => {
  it.each(Object.keys(PUBLISHED_SCHEMAS) as (keyof typeof PUBLISHED_SCHEMAS)[])(
    '%s is up to date (run npx tsx rules/generate-schemas.ts)',
    async (name) => {
      expect(await readFile(here(name), 'utf8')).toBe(await renderSchema(name));
    },
  );

  // Editors validate with the published schema; it must accept what the loader accepts and
  // reject the structural mistakes the loader rejects.
  const ajv = new Ajv({ strict: false, allErrors: true });
  const published = (name: string) =>
    ajv.compile(JSON.parse(readFileSync(new URL(name, import.meta.url), 'utf8')) as object);
  const validateRule = published('rule.schema.json');
  const validateSegment = published('segment.schema.json');

  it('accepts every example rule and segment', async () => {
    for (const rule of await examples('examples'))
      expect(validateRule(rule) ? [] : validateRule.errors).toEqual([]);
    for (const seg of await examples('examples/segments'))
      expect(validateSegment(seg) ? [] : validateSegment.errors).toEqual([]);
  });

  it('rejects structural mistakes', async () => {
    const [base] = (await examples('examples')) as Record<string, unknown>[];
    const bad: Record<string, unknown>[] = [
      { ...base, category: 'promo' },
      { ...base, trigger: { event: 'x', delay: '3 days' } },
      { ...base, trigger: { segment: 'x', on: 'entry' } },
      { ...base, conditions: { all: [{ fact: 'user', operator: 'equals', value: 1 }] } },
      { ...base, conditions: { fact: 'user', operator: 'equal', value: 1 } },
      { ...base, conditions: { all: [{ not: [{ fact: 'user', operator: 'equal', value: 1 }] }] } },
      { ...base, experiment: { holdout: 1 } },
      { ...base, experiment: { variants: [{ id: 'a', weight: 0 }] } },
      { ...base, extra: true },
    ];
    for (const rule of bad) expect(validateRule(rule), JSON.stringify(rule)).toBe(false);
  });
});

describe('rules/README.md', () => {
  it('documents every operator, fact and rule field', async () => {
    const readme = await readFile(here('README.md'), 'utf8');
    const { OPERATORS, FACTS, RuleSchema } = await import('./schema.ts');
    for (const name of [
      ...OPERATORS,
      ...FACTS,
      ...Object.keys(RuleSchema.properties).filter((k) => k !== '$schema'),
    ]) {
      expect(readme.includes(`\`${name}\``) || readme.includes(`\`${name}.`), name).toBe(true);
    }
  });
});
