// Time-based segments ("no app_opened in the last 30 days") change membership while nothing
// happens to the user. Their conditions are constant between breakpoints that follow from the
// duration operators (withinLast / olderThan / withinNext) and the timestamps they read, so the
// core can name the next instant a membership may flip and set one recheck timer for it.
import type { CompiledSegment, Facts } from '../../rules/types.ts';
import { parseDuration } from '../../rules/index.ts';

const TIME_OPERATORS = new Set(['withinLast', 'olderThan', 'withinNext']);

interface TimeLeaf {
  fact: 'stats' | 'user';
  path: string[];
  op: string;
  durationMs: number;
}

export interface TimedSegment {
  segment: CompiledSegment;
  leaves: TimeLeaf[];
}

/** The segments whose membership can change with time alone, with the leaves that make it so. */
export function timedSegments(segments: readonly CompiledSegment[]): TimedSegment[] {
  const out: TimedSegment[] = [];
  for (const segment of segments) {
    const leaves: TimeLeaf[] = [];
    collect(segment.def.conditions, leaves);
    if (leaves.length > 0) out.push({ segment, leaves });
  }
  return out;
}

function collect(node: unknown, leaves: TimeLeaf[]): void {
  if (node === null || typeof node !== 'object') return;
  const n = node as Record<string, unknown>;
  if (Array.isArray(n.all)) for (const c of n.all) collect(c, leaves);
  if (Array.isArray(n.any)) for (const c of n.any) collect(c, leaves);
  if (n.not !== undefined) collect(n.not, leaves);
  if (typeof n.operator !== 'string' || !TIME_OPERATORS.has(n.operator)) return;
  if (
    (n.fact !== 'stats' && n.fact !== 'user') ||
    typeof n.path !== 'string' ||
    typeof n.value !== 'string'
  )
    return;
  const path = splitPath(n.path);
  if (!path) return;
  let durationMs: number;
  try {
    durationMs = parseDuration(n.value);
  } catch {
    return;
  }
  leaves.push({ fact: n.fact, path, op: n.operator, durationMs });
}

/** `$.a.b`, `$["Feature Used"].last`, `$['x']`: the plain paths a timestamp is read from. */
function splitPath(p: string): string[] | null {
  if (!p.startsWith('$')) return null;
  const out: string[] = [];
  const re = /\.([A-Za-z0-9_-]+)|\[(["'])(.*?)\2\]|\[([0-9]+)\]/y;
  re.lastIndex = 1;
  while (re.lastIndex < p.length) {
    const m = re.exec(p);
    if (!m) return null;
    out.push(m[1] ?? m[3] ?? m[4]!);
  }
  return out;
}

function read(value: unknown, path: readonly string[]): unknown {
  let cur = value;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, k)) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function epochMs(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string') {
    const t = Date.parse(v);
    return Number.isNaN(t) ? null : t;
  }
  return null;
}

/** Looked at most this many breakpoints ahead; beyond, the next event or recheck looks again. */
const MAX_CANDIDATES = 64;

/**
 * The earliest instant after `facts.now` at which a timed segment's membership differs from
 * `members`, or null if none will without a new event. `facts.now` is restored before return.
 */
export function nextSegmentChange(
  timed: readonly TimedSegment[],
  facts: Facts,
  members: Record<string, boolean>,
): number | null {
  const now = facts.now;
  const candidates: number[] = [];
  for (const { leaves } of timed) {
    for (const leaf of leaves) {
      const t = epochMs(read(leaf.fact === 'stats' ? facts.stats : facts.user, leaf.path));
      if (t === null) continue;
      const d = leaf.durationMs;
      // withinLast: true on [t, t+d]; olderThan: true after t+d; withinNext: true on [t-d, t].
      if (leaf.op === 'withinLast') candidates.push(t, t + d + 1);
      else if (leaf.op === 'olderThan') candidates.push(t + d + 1);
      else candidates.push(t - d, t + 1);
    }
  }
  const ahead = candidates.filter((c) => c > now).sort((a, b) => a - b);
  let found: number | null = null;
  let checked = 0;
  for (let i = 0; i < ahead.length && checked < MAX_CANDIDATES && found === null; i++) {
    const c = ahead[i]!;
    if (i > 0 && c === ahead[i - 1]) continue;
    checked++;
    facts.now = c;
    for (const { segment } of timed) {
      if (segment.test(facts) !== (members[segment.def.id] === true)) {
        found = c;
        break;
      }
    }
  }
  facts.now = now;
  return found;
}
