// Shared mapping of HTTP provider answers (SMS, push) to provider results.
import type { ProviderResult } from '../provider.ts';

export function retryAfterHeader(value: string | null): number | undefined {
  if (!value) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/**
 * Failures that happened before any byte of the request could reach the provider: the
 * connection was refused, the name did not resolve, the connection or its TLS handshake never
 * completed. The provider cannot have the message, so another provider may be tried at once.
 */
const NOT_SENT = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
]);

/**
 * Network failures and timeouts of a provider call: always worth another try. A failure after
 * the request may have been sent (a connection reset, the socket closed before the answer, the
 * call's timeout) is `ambiguous`: the provider may have accepted the message, so the pipeline
 * neither tries another provider in the same pass nor moves on before this one answers.
 */
export function networkFailure(err: unknown): ProviderResult {
  const e = err as {
    name?: string;
    message?: string;
    code?: string;
    cause?: { code?: string; message?: string };
  };
  if (e.name === 'TimeoutError' || e.name === 'AbortError')
    return { status: 'retriable', error: 'timed out without an answer', ambiguous: true };
  const code = e.cause?.code ?? e.code;
  const error = `${code ?? e.name ?? 'error'}: ${e.cause?.message ?? e.message ?? String(err)}`;
  return code !== undefined && NOT_SENT.has(code)
    ? { status: 'retriable', error }
    : { status: 'retriable', error, ambiguous: true };
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
