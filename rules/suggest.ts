// Did-you-mean suggestions for names a product owner mistyped in a rule or segment file:
// a field, fact, operator, segment or template close to one that exists.

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(
        dp[j]! + 1,
        dp[j - 1]! + 1,
        prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1),
      );
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

/** ` (did you mean "x"?)` when a known name is close to what was written. */
export function didYouMean(input: string, known: readonly string[]): string {
  let best: string | null = null;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(input, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  if (best === null) return '';
  const close =
    bestD <= Math.max(1, Math.floor(input.length / 3)) ||
    (bestD <= 2 && (isSubsequence(input, best) || isSubsequence(best, input)));
  return close ? ` (did you mean "${best}"?)` : '';
}

/** "cnt" in "count": abbreviations are likely typos of the longer name. */
function isSubsequence(short: string, long: string): boolean {
  let i = 0;
  for (const ch of long.toLowerCase()) if (ch === short[i]?.toLowerCase()) i++;
  return i === short.length;
}
