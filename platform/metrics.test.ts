import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Counter, createMetricsRegistry } from './metrics.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

describe('metrics', () => {
  it('names every product metric lifecycle_*, so one scrape job and one dashboard cover every process', () => {
    const files = execFileSync('git', ['ls-files', '*.ts'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .filter(
        (f) => f && !f.endsWith('.test.ts') && !f.startsWith('test/') && !f.startsWith('bench/'),
      );
    const names: string[] = [];
    for (const file of files) {
      const source = readFileSync(path.join(ROOT, file), 'utf8');
      for (const m of source.matchAll(
        /new (?:Counter|Gauge|Histogram|Summary)\(\{\s*name:\s*['"`]([^'"`]+)['"`]/g,
      ))
        names.push(`${file}: ${m[1]}`);
    }
    expect(names.length).toBeGreaterThan(20);
    expect(names.filter((n) => !/: lifecycle_[a-z0-9_]+$/.test(n))).toEqual([]);
  });

  it('labels every series with the process it comes from', async () => {
    const registry = createMetricsRegistry({ defaults: false, process: 'engine' });
    new Counter({ name: 'lifecycle_test_total', help: 'test', registers: [registry] }).inc();
    expect(await registry.metrics()).toContain('lifecycle_test_total{process="engine"} 1');
  });
});
