import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { replaceTable } from './config-table.ts';

describe('README configuration table', () => {
  it('matches the config schema (run `npx tsx scripts/config-table.ts --write`)', () => {
    const readme = readFileSync(path.join(import.meta.dirname, '..', 'README.md'), 'utf8');
    expect(replaceTable(readme)).toBe(readme);
  });
});
