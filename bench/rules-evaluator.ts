// Benchmark: the compiled rule evaluator against json-rules-engine on the same rule sets
// (20 and 100 rules) and the same users, in one run. Reports evaluations/s of each, the
// ratio (target >= 100x) and whether every result was identical.
// Run alone: npx tsx bench/rules-evaluator.ts (or through npm run bench -- rules-evaluator).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileConditions, type Conditions, type Facts } from '../rules/index.ts';
import { createReferenceEngine } from '../rules/reference.ts';

const NOW = Date.UTC(2026, 0, 15, 12);
const DAY = 86_400_000;
const EVENT_TYPES = [
  'user_registered',
  'app_opened',
  'export_done',
  'Feature Used',
  'subscription_started',
  'payment_failed',
  'trial_ends_soon',
];
const PLANS = ['trial', 'basic', 'pro', 'family', 'cancelled'];
const COUNTRIES = ['DE', 'FR', 'US', 'GB', 'BR', 'IN'];

/** Small deterministic PRNG (mulberry32) so every run measures the same work. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const statsPath = (type: string, field: string) =>
  /^[A-Za-z0-9_]+$/.test(type) ? `$.${type}.${field}` : `$["${type}"].${field}`;

// Comparisons of the kinds product owners write: plan checks, counters, recency, event data.
function leaf(r: Rand): Record<string, unknown> {
  switch (Math.floor(r() * 8)) {
    case 0:
      return { fact: 'user', path: '$.plan', operator: 'equal', value: pick(r, PLANS) };
    case 1:
      return {
        fact: 'user',
        path: '$.plan',
        operator: 'in',
        value: [pick(r, PLANS), pick(r, PLANS)],
      };
    case 2:
      return {
        fact: 'stats',
        path: statsPath(pick(r, EVENT_TYPES), 'count'),
        operator: 'equal',
        value: 0,
      };
    case 3:
      return {
        fact: 'stats',
        path: statsPath(pick(r, EVENT_TYPES), 'count'),
        operator: 'greaterThanInclusive',
        value: Math.floor(r() * 5),
      };
    case 4:
      return {
        fact: 'stats',
        path: statsPath(pick(r, EVENT_TYPES), 'last'),
        operator: pick(r, ['withinLast', 'olderThan']),
        value: pick(r, ['1d', '7d', '30d']),
      };
    case 5:
      return {
        fact: 'event',
        path: '$.properties.amount',
        operator: 'greaterThan',
        value: Math.floor(r() * 50),
      };
    case 6:
      return { fact: 'user', path: '$.country', operator: 'notIn', value: [pick(r, COUNTRIES)] };
    default:
      return { fact: 'user', path: '$.email', operator: 'exists', value: true };
  }
}

function ruleConditions(r: Rand): Conditions {
  const n = 2 + Math.floor(r() * 4);
  const all: Record<string, unknown>[] = [];
  for (let i = 0; i < n; i++) all.push(leaf(r));
  if (r() < 0.4) all.push({ any: [leaf(r), leaf(r)] });
  if (r() < 0.3) all.push({ not: leaf(r) });
  return { all } as Conditions;
}

function userFacts(r: Rand, i: number): Facts {
  const stats: Facts['stats'] = {};
  for (const t of EVENT_TYPES) {
    const count = r() < 0.4 ? 0 : Math.floor(r() * 6);
    const last = count ? NOW - Math.floor(r() * 60 * DAY) : null;
    stats[t] = { count, first: last === null ? null : last - Math.floor(r() * 30 * DAY), last };
  }
  const user: Record<string, unknown> = { plan: pick(r, PLANS), country: pick(r, COUNTRIES) };
  if (r() < 0.9) user.email = `user${i}@example.com`;
  return {
    event: {
      id: `ev-${i}`,
      userId: `u-${i}`,
      type: 'payment_failed',
      ts: NOW,
      receivedAt: NOW,
      source: 'bench',
      properties: { amount: Math.floor(r() * 60) },
    },
    user,
    stats,
    segments: {},
    rule: { fires: 0, lastFiredAt: null },
    now: NOW,
  };
}

interface SetResult {
  rules: number;
  users: number;
  fastRunsPerSec: number;
  referenceRunsPerSec: number;
  fastRuleEvaluationsPerSec: number;
  referenceRuleEvaluationsPerSec: number;
  ratio: number;
  matches: number;
  identical: boolean;
  mismatches: number;
}

async function measureSet(
  ruleCount: number,
  users: Facts[],
  seconds: { fast: number; reference: number },
): Promise<SetResult> {
  const r = prng(ruleCount);
  const conditions = Array.from({ length: ruleCount }, () => ruleConditions(r));
  const compiled = conditions.map((c) => compileConditions(c));
  const reference = createReferenceEngine(conditions);

  // Identical results on every user before timing anything.
  let mismatches = 0;
  let matches = 0;
  for (const facts of users) {
    const expected = await reference.evaluate(facts);
    for (let i = 0; i < compiled.length; i++) {
      const got = compiled[i]!(facts);
      if (got !== expected[i]) mismatches++;
      if (got) matches++;
    }
  }

  // One "run" = every rule of the set evaluated for one user (what engine.run does).
  const fastRun = (facts: Facts): number => {
    let hits = 0;
    for (let i = 0; i < compiled.length; i++) if (compiled[i]!(facts)) hits++;
    return hits;
  };
  let sink = 0;
  for (let w = 0; w < 2000; w++) sink += fastRun(users[w % users.length]!);
  let fastRuns = 0;
  const fastStart = performance.now();
  const fastEnd = fastStart + seconds.fast * 1000;
  while (performance.now() < fastEnd) {
    // Batches keep the clock reads out of the measured work.
    for (let b = 0; b < 1000; b++) sink += fastRun(users[(fastRuns + b) % users.length]!);
    fastRuns += 1000;
  }
  const fastSecs = (performance.now() - fastStart) / 1000;

  for (let w = 0; w < 50; w++) await reference.evaluate(users[w % users.length]!);
  let refRuns = 0;
  const refStart = performance.now();
  const refEnd = refStart + seconds.reference * 1000;
  while (performance.now() < refEnd) {
    const out = await reference.evaluate(users[refRuns % users.length]!);
    sink += out.length;
    refRuns++;
  }
  const refSecs = (performance.now() - refStart) / 1000;
  if (sink === -1) console.log('unreachable');

  const fastRunsPerSec = fastRuns / fastSecs;
  const referenceRunsPerSec = refRuns / refSecs;
  return {
    rules: ruleCount,
    users: users.length,
    fastRunsPerSec: Math.round(fastRunsPerSec),
    referenceRunsPerSec: Math.round(referenceRunsPerSec),
    fastRuleEvaluationsPerSec: Math.round(fastRunsPerSec * ruleCount),
    referenceRuleEvaluationsPerSec: Math.round(referenceRunsPerSec * ruleCount),
    ratio: Math.round((fastRunsPerSec / referenceRunsPerSec) * 10) / 10,
    matches,
    identical: mismatches === 0,
    mismatches,
  };
}

const fmt = (n: number) => n.toLocaleString('en-US');

export async function run(): Promise<{ target: number; passed: boolean; sets: SetResult[] }> {
  const r = prng(7);
  const users = Array.from({ length: 200 }, (_, i) => userFacts(r, i));
  const sets: SetResult[] = [];
  for (const n of [20, 100]) sets.push(await measureSet(n, users, { fast: 2, reference: 3 }));
  const target = 100;
  const passed = sets.every((s) => s.identical && s.ratio >= target);
  const result = { at: new Date().toISOString(), node: process.version, target, passed, sets };
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'rules-evaluator.json'), `${JSON.stringify(result, null, 2)}\n`);
  for (const s of sets) {
    console.log(
      `${String(s.rules).padStart(3)} rules x ${s.users} users: compiled ${fmt(s.fastRunsPerSec)} runs/s (${fmt(s.fastRuleEvaluationsPerSec)} rule evals/s), ` +
        `json-rules-engine ${fmt(s.referenceRunsPerSec)} runs/s (${fmt(s.referenceRuleEvaluationsPerSec)} rule evals/s), ` +
        `${s.ratio}x faster, results ${s.identical ? `identical (${fmt(s.matches)} matches)` : `DIFFER in ${s.mismatches} evaluations`}`,
    );
  }
  console.log(`target >= ${target}x with identical results: ${passed ? 'met' : 'NOT met'}`);
  return result;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await run();
