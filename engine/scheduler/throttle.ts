// The rate of a throttled fan-out: a page of n users may go once the n before it had their
// time at `perSecond`, so over a run the users reach the events topic at that rate. Nothing is
// saved up while idle (a run that waited on the directory does not burst afterwards).

export interface Throttle {
  /** Reserves `n` users; returns the instant (epoch ms of `clock`) they may be published. */
  take(n: number): number;
}

export function createThrottle(perSecond: number, clock: () => number = Date.now): Throttle {
  if (!(perSecond > 0)) throw new Error(`a throttle needs a positive rate, got ${perSecond}`);
  const msPerUser = 1000 / perSecond;
  let free = -Infinity;
  return {
    take(n) {
      const at = Math.max(free, clock());
      free = at + n * msPerUser;
      return at;
    },
  };
}

/** Users per page of a throttled run: about a fifth of a second's worth, so a stop is felt at once. */
export function throttledPageSize(pageSize: number, perSecond: number | null): number {
  if (perSecond === null) return pageSize;
  return Math.max(1, Math.min(pageSize, Math.ceil(perSecond / 5)));
}
