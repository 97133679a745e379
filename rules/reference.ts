// json-rules-engine as the reference evaluator: the same conditions and facts, with the
// product's custom operators registered from operators.ts. Slow (promises); used by the
// differential test and the benchmark, never on the engine's hot path.
import { Engine, type RuleProperties } from 'json-rules-engine';
import type { Conditions } from './schema.ts';
import type { Facts } from './types.ts';
import { customOperatorCallbacks } from './operators.ts';

function runtimeFacts(facts: Facts): Record<string, unknown> {
  return {
    event: facts.event,
    user: facts.user,
    stats: facts.stats,
    segments: facts.segments,
    rule: facts.rule,
    now: facts.now,
  };
}

function newEngine(now: () => number): Engine {
  const engine = new Engine([], { allowUndefinedFacts: true });
  for (const [name, callback] of Object.entries(customOperatorCallbacks(now)))
    engine.addOperator(name, callback);
  return engine;
}

const asRuleConditions = (conditions: Conditions) =>
  structuredClone(conditions) as unknown as RuleProperties['conditions'];

/**
 * One engine holding several rules, for benchmarks: returns which of them matched. Calls
 * must not overlap (the clock the time operators read is per engine).
 */
export function createReferenceEngine(conditionsList: Conditions[]): {
  evaluate(facts: Facts): Promise<boolean[]>;
} {
  let now = 0;
  const engine = newEngine(() => now);
  conditionsList.forEach((conditions, index) =>
    engine.addRule({
      name: String(index),
      conditions: asRuleConditions(conditions),
      event: { type: String(index) },
    }),
  );
  return {
    async evaluate(facts) {
      now = facts.now;
      const { results } = await engine.run(runtimeFacts(facts));
      const out = conditionsList.map(() => false);
      for (const matched of results) out[Number(matched.name)] = true;
      return out;
    },
  };
}

/** Evaluates conditions with json-rules-engine (allowUndefinedFacts); time operators read facts.now. */
export async function referenceEvaluate(conditions: Conditions, facts: Facts): Promise<boolean> {
  const engine = newEngine(() => facts.now);
  engine.addRule({ conditions: asRuleConditions(conditions), event: { type: 'match' } });
  const { results } = await engine.run(runtimeFacts(facts));
  return results.length === 1;
}
