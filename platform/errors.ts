// Typed errors. Infrastructure errors say whether a retry can help (`retriable`), as
// kafkajs does; HTTP-facing errors carry a stable code, a status and an actionable message.

export class LifecycleError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: string,
    message: string,
    opts: { retriable?: boolean; status?: number; cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LifecycleError';
    this.code = code;
    this.retriable = opts.retriable ?? false;
    this.status = opts.status ?? 500;
    this.details = opts.details;
  }
}

/** Error codes used across rooms. HTTP APIs return `{ code, message }` with these. */
export const ErrorCodes = {
  BadRequest: 'LC_ERR_BAD_REQUEST',
  Unauthorized: 'LC_ERR_UNAUTHORIZED',
  Forbidden: 'LC_ERR_FORBIDDEN',
  NotFound: 'LC_ERR_NOT_FOUND',
  PayloadTooLarge: 'LC_ERR_PAYLOAD_TOO_LARGE',
  RateLimited: 'LC_ERR_RATE_LIMITED',
  Unavailable: 'LC_ERR_UNAVAILABLE',
  InvalidSignature: 'LC_ERR_INVALID_SIGNATURE',
  Internal: 'LC_ERR_INTERNAL',
} as const;

export function isRetriable(err: unknown): boolean {
  if (err instanceof LifecycleError) return err.retriable;
  if (err && typeof err === 'object' && 'retriable' in err) return Boolean((err as { retriable: unknown }).retriable);
  return false;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
