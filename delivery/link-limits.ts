// How often one signed link may be used: at most `perMinute` uses in any sliding minute,
// counted per token. A person opens, clicks or unsubscribes a few times; a token used more
// often is a script, and each use could publish an engagement event or rewrite consent, so
// those uses are refused instead of acted on.
//
// The counts live in this process (one instance of the API counts its own requests; behind N
// instances a token may be used up to N times the limit) and are kept for the most recently
// used `maxTokens` tokens only. Only genuine tokens are counted (the caller checks the
// signature first), so requests with made-up tokens cannot push real counts out.

export interface LinkUseLimiter {
  /** Counts one use of the token; refused (with when to try again) when it is over its limit. */
  take(token: string, now: number): { allowed: true } | { allowed: false; retryAfterS: number };
}

const MINUTE_MS = 60_000;

export function createLinkUseLimiter(opts: {
  perMinute: number;
  maxTokens?: number;
}): LinkUseLimiter {
  const maxTokens = opts.maxTokens ?? 20_000;
  /** Token key -> times of its uses within the last minute, oldest first; in order of last use. */
  const uses = new Map<string, number[]>();
  // The MAC part: unique per token and of fixed length, unlike the whole token.
  const keyOf = (token: string) => token.slice(token.lastIndexOf('.') + 1);
  return {
    take(token, now) {
      const key = keyOf(token);
      const times = (uses.get(key) ?? []).filter((t) => t > now - MINUTE_MS);
      uses.delete(key);
      uses.set(key, times);
      if (uses.size > maxTokens) uses.delete(uses.keys().next().value!);
      if (times.length >= opts.perMinute) {
        return {
          allowed: false,
          retryAfterS: Math.max(1, Math.ceil((times[0]! + MINUTE_MS - now) / 1000)),
        };
      }
      times.push(now);
      return { allowed: true };
    },
  };
}
