// Comparing the goal conversion of treated users with the holdout group: absolute uplift
// with a confidence interval by the two-proportion normal approximation (Wald, unpooled
// standard error) and a two-sided z-test p-value (pooled standard error).

export interface Group {
  /** Users in the group. */
  n: number;
  /** Users who converted. */
  x: number;
}

export interface ProportionComparison {
  treated: Group & { rate: number | null };
  holdout: Group & { rate: number | null };
  /** treated rate - holdout rate (null when a group is empty). */
  uplift: number | null;
  /** uplift / holdout rate (null when the holdout rate is 0 or unknown). */
  relativeUplift: number | null;
  confidence: number;
  /** Confidence interval of the absolute uplift. */
  ci: { low: number; high: number } | null;
  /** Two-sided p-value of "no difference". */
  pValue: number | null;
}

export function rate(x: number, n: number): number | null {
  return n > 0 ? x / n : null;
}

function assertGroup(name: string, g: Group): void {
  if (!Number.isInteger(g.n) || !Number.isInteger(g.x) || g.n < 0 || g.x < 0 || g.x > g.n) {
    throw new RangeError(`${name}: need integers 0 <= converted <= users, got ${g.x}/${g.n}`);
  }
}

/** Standard normal CDF (erfc by Numerical Recipes' Chebyshev fit, |error| < 1.2e-7). */
export function normalCdf(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * x);
  const erfc =
    t *
    Math.exp(
      -x * x -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t *
                              (-1.13520398 +
                                t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return z >= 0 ? 1 - erfc / 2 : erfc / 2;
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`probability must be in (0, 1), got ${p}`);
  const a = [
    -3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2,
    -3.066479806614716e1, 2.506628277459239,
  ];
  const b = [
    -5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1,
    -1.328068155288572e1,
  ];
  const c = [
    -7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734,
    4.374664141464968, 2.938163982698783,
  ];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const poly = (k: number[], x: number) => k.reduce((acc, v) => acc * x + v, 0);
  const low = 0.02425;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    return poly(c, q) / (poly(d, q) * q + 1);
  }
  if (p > 1 - low) {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    return -poly(c, q) / (poly(d, q) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return (poly(a, r) * q) / (poly(b, r) * r + 1);
}

/**
 * Treated vs holdout: uplift = p_t - p_h, interval uplift ± z * sqrt(p_t(1-p_t)/n_t + p_h(1-p_h)/n_h)
 * with z the two-sided quantile of `confidence` (1.96 for 95%).
 */
export function compareProportions(
  treated: Group,
  holdout: Group,
  confidence = 0.95,
): ProportionComparison {
  assertGroup('treated', treated);
  assertGroup('holdout', holdout);
  if (!(confidence > 0 && confidence < 1))
    throw new RangeError(`confidence must be in (0, 1), got ${confidence}`);
  const pt = rate(treated.x, treated.n);
  const ph = rate(holdout.x, holdout.n);
  const base = { treated: { ...treated, rate: pt }, holdout: { ...holdout, rate: ph }, confidence };
  if (pt === null || ph === null)
    return { ...base, uplift: null, relativeUplift: null, ci: null, pValue: null };
  const uplift = pt - ph;
  const z = normalQuantile(1 - (1 - confidence) / 2);
  const se = Math.sqrt((pt * (1 - pt)) / treated.n + (ph * (1 - ph)) / holdout.n);
  const pooled = (treated.x + holdout.x) / (treated.n + holdout.n);
  const sePooled = Math.sqrt(pooled * (1 - pooled) * (1 / treated.n + 1 / holdout.n));
  const pValue =
    sePooled === 0 ? (uplift === 0 ? 1 : 0) : 2 * (1 - normalCdf(Math.abs(uplift) / sePooled));
  return {
    ...base,
    uplift,
    relativeUplift: ph > 0 ? uplift / ph : null,
    ci: { low: uplift - z * se, high: uplift + z * se },
    pValue,
  };
}
