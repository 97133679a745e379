// Did-you-mean suggestions for names a product owner mistyped in a rule or segment file:
// a field, fact, operator, segment or template close to one that exists.

function editDistance(written: string, known: string): number {
  // One row of the edit-distance table: row[j] is the distance between the part of
  // `written` read so far and the first j characters of `known`.
  const row = Array.from({ length: known.length + 1 }, (_, j) => j);
  for (let i = 1; i <= written.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= known.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(
        row[j]! + 1,
        row[j - 1]! + 1,
        diagonal + (written[i - 1]!.toLowerCase() === known[j - 1]!.toLowerCase() ? 0 : 1),
      );
      diagonal = above;
    }
  }
  return row[known.length]!;
}

/** ` (did you mean "x"?)` when a known name is close to what was written. */
export function didYouMean(input: string, known: readonly string[]): string {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const name of known) {
    const distance = editDistance(input, name);
    if (distance < bestDistance) {
      bestDistance = distance;
      best = name;
    }
  }
  if (best === null) return '';
  const close =
    bestDistance <= Math.max(1, Math.floor(input.length / 3)) ||
    (bestDistance <= 2 && (isSubsequence(input, best) || isSubsequence(best, input)));
  return close ? ` (did you mean "${best}"?)` : '';
}

/** "cnt" in "count": abbreviations are likely typos of the longer name. */
function isSubsequence(short: string, long: string): boolean {
  let matched = 0;
  for (const ch of long.toLowerCase()) if (ch === short[matched]?.toLowerCase()) matched++;
  return matched === short.length;
}
