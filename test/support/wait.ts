// Polling for eventually-true conditions in integration tests.

export interface WaitOptions {
  /** Give up after this many ms (default 30 s). */
  timeout?: number;
  /** Pause between attempts in ms (default 100). */
  interval?: number;
  /** Said in the error when the time is up. */
  message?: string;
}

/**
 * Calls `probe` until it returns a value other than undefined/null/false and returns it.
 * A probe that throws is retried; its last error is part of the timeout error.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  options: WaitOptions = {},
): Promise<Exclude<T, undefined | null | false>> {
  const timeout = options.timeout ?? 30_000;
  const interval = options.interval ?? 100;
  const deadline = Date.now() + timeout;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== null && v !== false)
        return v as Exclude<T, undefined | null | false>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new Error(`${options.message ?? 'condition not met'} within ${timeout} ms${why}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}
