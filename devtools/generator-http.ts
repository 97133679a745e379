// The generator's two doors into the product over HTTP, as an app's backend would use them:
// the Segment batch API of the ingest server and the preference API of the API server. The
// demo hands its in-process servers the same requests (`batchRequest`, `optInRequest`) and
// reads their answers the same way (`refusal`).
import { ErrorCodes, errorMessage, LifecycleError, type ErrorCode } from '../platform/errors.ts';
import type { SegmentMessage } from './generator.ts';

/** Where the synthetic opt-ins say the user agreed (kept in the user's consent record). */
export const OPT_IN_SOURCE = 'synthetic_signup_form';

export interface HttpRequest {
  method: 'POST' | 'PATCH';
  url: string;
  headers: Record<string, string>;
  body: string;
}

export function batchRequest(
  writeKey: string,
  batch: readonly object[],
  sentAt: Date,
): HttpRequest {
  return {
    method: 'POST',
    url: '/v1/batch',
    headers: {
      'content-type': 'application/json',
      authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`,
    },
    // sentAt lets the ingest API correct for a clock that differs from its own.
    body: JSON.stringify({ batch, sentAt: sentAt.toISOString() }),
  };
}

/** Marketing by email and in-app, as a signup form's ticked box would record it. */
export function optInRequest(token: string, userId: string, source = OPT_IN_SOURCE): HttpRequest {
  return {
    method: 'PATCH',
    url: `/v1/users/${encodeURIComponent(userId)}/preferences`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({
      consents: {
        marketing: {
          email: { granted: true, source },
          inapp: { granted: true, source },
        },
      },
    }),
  };
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes));

/**
 * The error for an answer the product did not accept, or null for a success. Retriable when
 * a later attempt may succeed (rate limited, unavailable); a refusal (bad key, bad token, a
 * message the API rejected) is not.
 */
export function refusal(what: string, status: number, body: string): LifecycleError | null {
  let parsed: { code?: unknown; message?: unknown; rejected?: unknown } = {};
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    // not JSON: the start of the body says what it is
  }
  if (status >= 200 && status < 300) {
    // 202 from the batch API lists messages it refused: the generator makes none such.
    const rejected = Array.isArray(parsed.rejected) ? parsed.rejected : [];
    if (rejected.length === 0) return null;
    return new LifecycleError(
      ErrorCodes.BadRequest,
      `${what}: ${rejected.length} message(s) refused, the first: ${JSON.stringify(rejected[0])}`,
      { status: 400 },
    );
  }
  const retriable = status === 429 || status >= 500;
  const code =
    typeof parsed.code === 'string' && KNOWN_CODES.has(parsed.code)
      ? (parsed.code as ErrorCode)
      : retriable
        ? ErrorCodes.Unavailable
        : ErrorCodes.BadRequest;
  const message = typeof parsed.message === 'string' ? parsed.message : body.slice(0, 300);
  return new LifecycleError(code, `${what}: ${status} ${code}: ${message}`, { status, retriable });
}

async function call(baseUrl: string, what: string, req: HttpRequest): Promise<void> {
  let res: Response;
  try {
    res = await fetch(new URL(req.url, baseUrl), {
      method: req.method,
      headers: req.headers,
      body: req.body,
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw new LifecycleError(
      ErrorCodes.Unavailable,
      `${what}: ${baseUrl} did not answer (${errorMessage(err instanceof Error && err.cause instanceof Error ? err.cause : err)})`,
      { retriable: true, cause: err },
    );
  }
  const problem = refusal(what, res.status, await res.text());
  if (problem) throw problem;
}

/** `postBatch` for the generator: the ingest API at `ingestUrl` with a write key. */
export function httpBatchPoster(
  ingestUrl: string,
  writeKey: string,
): (batch: SegmentMessage[]) => Promise<void> {
  return (batch) => call(ingestUrl, 'ingest', batchRequest(writeKey, batch, new Date()));
}

/** `optIn` for the generator: the preference API at `apiUrl` with a staff token (role service, support or admin). */
export function httpOptIn(apiUrl: string, token: string): (userId: string) => Promise<void> {
  return (userId) => call(apiUrl, 'opt-in', optInRequest(token, userId));
}
