// Shared mapping of HTTP provider answers (SMS, push) to provider results.
import type { ProviderResult } from '../provider.ts';

export function retryAfterHeader(value: string | null): number | undefined {
  if (!value) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/** Network failures and timeouts of fetch: always worth another try (or another provider). */
export function networkFailure(err: unknown): ProviderResult {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError')
    return { status: 'retriable', error: 'timed out' };
  return {
    status: 'retriable',
    error: `${e.cause?.code ?? e.name ?? 'error'}: ${e.cause?.message ?? e.message ?? String(err)}`,
  };
}

/** 429 and 5xx are the provider's trouble; 401/403 are our credentials (fail over to the next provider). */
export function transientStatus(
  status: number,
  retryAfter: string | null,
  detail: string,
): ProviderResult | undefined {
  if (status === 429 || status >= 500 || status === 408) {
    const after = retryAfterHeader(retryAfter);
    return {
      status: 'retriable',
      error: `HTTP ${status}: ${detail}`,
      ...(after !== undefined ? { retryAfterMs: after } : {}),
    };
  }
  if (status === 401 || status === 403)
    return {
      status: 'retriable',
      error: `HTTP ${status} (provider credentials rejected): ${detail}`,
    };
  return undefined;
}

export async function readJson(res: Response): Promise<Record<string, unknown>> {
  const text = await res.text();
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return { message: text.slice(0, 200) };
  }
}
