// Holdout and A/B variant assignment: a stable hash of (rule id, user id), so a user keeps
// the same group on every evaluation, in every process, after every restart.
import { createHash } from 'node:crypto';
import type { RuleDefinition } from './schema.ts';

export interface ExperimentAssignment {
  /** Recorded but not sent, to measure uplift. */
  holdout: boolean;
  /** Variant id, or null when the rule has no variants or the user is in the holdout. */
  variant: string | null;
  /** Template to render: the variant's, else the rule's. */
  template: string;
}

const TWO_POW_52 = 2 ** 52;

/** Two independent uniform numbers in [0, 1) from sha1(ruleId + ':' + userId). */
export function experimentDraws(ruleId: string, userId: string): [number, number] {
  const digest = createHash('sha1').update(`${ruleId}:${userId}`).digest();
  // 52 bits each (a double's mantissa), from disjoint bytes of the digest.
  const holdoutDraw = Number(digest.readBigUInt64BE(0) >> 12n) / TWO_POW_52;
  const variantDraw = Number(digest.readBigUInt64BE(8) >> 12n) / TWO_POW_52;
  return [holdoutDraw, variantDraw];
}

/**
 * The first draw decides the holdout (share `experiment.holdout`), the second picks a
 * variant in proportion to the weights. Changing weights moves only the users near a
 * boundary; changing the holdout share does not reshuffle variants.
 */
export function assignExperiment(rule: RuleDefinition, userId: string): ExperimentAssignment {
  const template = rule.action.send.template;
  const experiment = rule.experiment;
  if (!experiment) return { holdout: false, variant: null, template };
  const [holdoutDraw, variantDraw] = experimentDraws(rule.id, userId);
  if (holdoutDraw < (experiment.holdout ?? 0)) return { holdout: true, variant: null, template };
  const variants = experiment.variants ?? [];
  if (variants.length === 0) return { holdout: false, variant: null, template };
  let total = 0;
  for (const variant of variants) total += variant.weight;
  let target = variantDraw * total;
  for (const variant of variants) {
    target -= variant.weight;
    if (target < 0)
      return { holdout: false, variant: variant.id, template: variant.template ?? template };
  }
  // Floating-point rounding at the very top of the range lands on the last variant.
  const last = variants[variants.length - 1]!;
  return { holdout: false, variant: last.id, template: last.template ?? template };
}
