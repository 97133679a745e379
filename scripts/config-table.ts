// Prints the README's configuration table from the config schema (`--write` updates README.md
// between its markers). A unit test fails when the README's table is stale.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { envVariables } from '../platform/config.ts';

export const BEGIN = '<!-- config-table:begin -->';
export const END = '<!-- config-table:end -->';

export function configTable(): string {
  const rows = envVariables().map((v) => {
    const def =
      v.secret && v.default !== ''
        ? '(development value)'
        : Array.isArray(v.default)
          ? (v.default as string[]).join(',')
          : String(v.default ?? '');
    return `| \`${v.env}\` | ${def === '' ? '' : `\`${def}\``} | ${v.description.replace(/\|/g, '\\|')}${v.secret ? ' Secret: redacted in logs.' : ''} |`;
  });
  return ['| Variable | Default | Meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

export function replaceTable(readme: string): string {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the ${BEGIN} ... ${END} markers`);
  return `${readme.slice(0, start + BEGIN.length)}\n${configTable()}\n${readme.slice(end)}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes('--write')) {
    const file = path.join(import.meta.dirname, '..', 'README.md');
    await writeFile(file, replaceTable(await readFile(file, 'utf8')));
  } else {
    console.log(configTable());
  }
}
