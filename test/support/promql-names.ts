// The metric and label names a PromQL expression reads, and the metrics the product's code
// registers, so a board's query can be checked against the code: a misspelt metric or label
// in Grafana draws an empty panel, not an error.
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
]);

/** Metric names (selectors) and label names (matchers, grouping) of one expression. */
export function promqlNames(expr: string): { metrics: string[]; labels: string[] } {
  const labels = new Set<string>();
  let text = expr
    // Grafana's interval variables stand where a duration goes.
    .replace(/\$__(rate_interval|interval|range)\b/g, '5m')
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  text = text.replace(/\{([^}]*)\}/g, (_m, body: string) => {
    for (const m of body.matchAll(/([A-Za-z_]\w*)\s*(=~|!~|!=|=)/g)) labels.add(m[1]!);
    return ' ';
  });
  text = text.replace(/\[[^\]]*\]/g, ' ');
  text = text.replace(
    /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g,
    (_m, _kw, list: string) => {
      for (const l of list.split(',').map((s) => s.trim())) if (l) labels.add(l);
      return ' ';
    },
  );
  const metrics = new Set<string>();
  for (const m of text.matchAll(/(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?/g)) {
    const [, name = '', call] = m;
    if (!call && !KEYWORDS.has(name)) metrics.add(name);
  }
  return { metrics: [...metrics], labels: [...labels] };
}

export interface RegisteredMetric {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary';
  labels: string[];
  file: string;
}

/** Where the closing brace of the object literal opening at `start` is. */
function objectEnd(text: string, start: number): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return i;
  }
  return text.length;
}

const CONSTRUCTORS: Record<string, RegisteredMetric['type']> = {
  Counter: 'counter',
  Gauge: 'gauge',
  Histogram: 'histogram',
  Summary: 'summary',
};

/**
 * Every `new Counter|Gauge|Histogram|Summary({ name: '...', labelNames: [...] })` of the
 * product's TypeScript under `root` (tests, benchmarks and node_modules left out).
 */
export async function registeredMetrics(
  root: string,
  rooms: readonly string[],
): Promise<Map<string, RegisteredMetric>> {
  const found = new Map<string, RegisteredMetric>();
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (/(?<!\.test|\.bench)\.ts$/.test(entry.name)) {
        const text = await readFile(path, 'utf8');
        for (const m of text.matchAll(/new (Counter|Gauge|Histogram|Summary)(?:<[^>]*>)?\(\{/g)) {
          const open = m.index + m[0].length - 1;
          const literal = text.slice(open, objectEnd(text, open) + 1);
          const name = /\bname:\s*'([^']+)'/.exec(literal)?.[1];
          if (!name) continue;
          const labels = /\blabelNames:\s*\[([^\]]*)\]/.exec(literal)?.[1] ?? '';
          found.set(name, {
            name,
            type: CONSTRUCTORS[m[1]!]!,
            labels: [...labels.matchAll(/'([^']+)'/g)].map((l) => l[1]!),
            file: relative(root, path),
          });
        }
      }
    }
  };
  for (const room of rooms) await walk(join(root, room));
  return found;
}

/** The series names Prometheus stores for a metric of this type. */
export function seriesNames(name: string, type: RegisteredMetric['type']): string[] {
  if (type === 'histogram') return [`${name}_bucket`, `${name}_sum`, `${name}_count`];
  if (type === 'summary') return [name, `${name}_sum`, `${name}_count`];
  return [name];
}
