// Fact paths: the subset of JSONPath that json-rules-engine resolves (through jsonpath-plus)
// to exactly one value, pre-parsed once so evaluation is a few property reads.

const DOT_NAME = /^[A-Za-z0-9_-]+/;
// Inside ["..."]: anything jsonpath-plus treats literally. Excluded: quotes and brackets (end
// the name), `;` `#` `^` `~` `,` `@` `*` `$` `(` `)` backtick `:` `\` `%` (jsonpath-plus syntax).
const BRACKET_NAME = /^\[(["'])([^"'[\];#^~,@*$()`:\\%]+)\1\]/;
const BRACKET_INDEX = /^\[([0-9]+)\]/;

export type ParsedPath = { ok: true; segments: readonly string[] } | { ok: false; message: string };

export const PATH_HINT =
  'write paths like $.plan, $.properties.amount, $.export_done.count, $["Feature Used"].count or $.items[0]';

/**
 * Splits `$.a["b c"][0]` into ["a", "b c", "0"]. Wildcards, filters, slices and recursive
 * descent are refused: they can match several values, which a comparison cannot use.
 */
export function parsePath(path: string): ParsedPath {
  if (!path.startsWith('$'))
    return { ok: false, message: `path ${JSON.stringify(path)} must start with "$": ${PATH_HINT}` };
  const segments: string[] = [];
  let rest = path.slice(1);
  while (rest.length > 0) {
    let match: RegExpExecArray | null;
    if (rest.startsWith('.') && (match = DOT_NAME.exec(rest.slice(1)))) {
      segments.push(match[0]);
      rest = rest.slice(1 + match[0].length);
    } else if ((match = BRACKET_INDEX.exec(rest))) {
      segments.push(match[1]!);
      rest = rest.slice(match[0].length);
    } else if ((match = BRACKET_NAME.exec(rest)) && match[2] !== '..') {
      segments.push(match[2]!);
      rest = rest.slice(match[0].length);
    } else {
      return {
        ok: false,
        message: `unsupported path ${JSON.stringify(path)} near ${JSON.stringify(rest)}: ${PATH_HINT}`,
      };
    }
  }
  return { ok: true, segments };
}

/**
 * The value json-rules-engine's almanac returns for a fact value and a parsed path: a
 * non-object fact value is returned as is (path ignored), otherwise each step follows an
 * own property of a truthy value, and a missing step yields undefined.
 */
export function resolvePath(value: unknown, segments: readonly string[]): unknown {
  if (value === null || typeof value !== 'object') return value;
  let cur: unknown = value;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    if (!cur || !Object.hasOwn(cur, seg)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}
