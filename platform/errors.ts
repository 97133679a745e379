// Typed errors. Infrastructure errors say whether a retry can help (`retriable`), as
// kafkajs does; HTTP-facing errors carry a stable code, a status and an actionable message.

/**
 * Every error code of the product: HTTP APIs return `{ code, message }` with these, and
 * `LifecycleError` takes no other (a new code is added here, with its status and meaning).
 */
export const ErrorCodes = {
  BadRequest: 'LC_ERR_BAD_REQUEST',
  ReservedEvent: 'LC_ERR_RESERVED_EVENT',
  Unauthorized: 'LC_ERR_UNAUTHORIZED',
  Forbidden: 'LC_ERR_FORBIDDEN',
  RoleForbidden: 'LC_ERR_ROLE_FORBIDDEN',
  KeyExpired: 'LC_ERR_KEY_EXPIRED',
  KeyRevoked: 'LC_ERR_KEY_REVOKED',
  NotFound: 'LC_ERR_NOT_FOUND',
  Conflict: 'LC_ERR_CONFLICT',
  PayloadTooLarge: 'LC_ERR_PAYLOAD_TOO_LARGE',
  UnsupportedMediaType: 'LC_ERR_UNSUPPORTED_MEDIA_TYPE',
  RateLimited: 'LC_ERR_RATE_LIMITED',
  Unavailable: 'LC_ERR_UNAVAILABLE',
  InvalidSignature: 'LC_ERR_INVALID_SIGNATURE',
  Internal: 'LC_ERR_INTERNAL',
  KafkaPublish: 'LC_ERR_KAFKA_PUBLISH',
  KafkaUnavailable: 'LC_ERR_KAFKA_UNAVAILABLE',
  Decode: 'LC_ERR_DECODE',
  Template: 'LC_ERR_TEMPLATE',
  UnknownTemplate: 'LC_ERR_UNKNOWN_TEMPLATE',
  TemplateChannel: 'LC_ERR_TEMPLATE_CHANNEL',
  UnknownUser: 'LC_ERR_UNKNOWN_USER',
  IdempotencyMismatch: 'LC_ERR_IDEMPOTENCY_MISMATCH',
  IdempotencyInProgress: 'LC_ERR_IDEMPOTENCY_IN_PROGRESS',
  TemplateInvalid: 'LC_ERR_TEMPLATE_INVALID',
  RecipientNotAllowed: 'LC_ERR_RECIPIENT_NOT_ALLOWED',
  Redis: 'LC_ERR_REDIS',
  RedisDurability: 'LC_ERR_REDIS_DURABILITY',
  RulesInvalid: 'LC_ERR_RULES_INVALID',
  MessageTypesInvalid: 'LC_ERR_MESSAGE_TYPES_INVALID',
  UnknownMessageType: 'LC_ERR_UNKNOWN_MESSAGE_TYPE',
  Analytics: 'LC_ERR_ANALYTICS',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** The HTTP status of each code (what a LifecycleError answers unless it names another) and what it means. */
export const ERROR_CODES: {
  readonly [C in ErrorCode]: { readonly status: number; readonly meaning: string };
} = {
  LC_ERR_BAD_REQUEST: {
    status: 400,
    meaning: 'the request is malformed or a value is invalid; the message names the field',
  },
  LC_ERR_RESERVED_EVENT: {
    status: 400,
    meaning:
      'an app sent an event type only the product makes (RESERVED_EVENT_TYPES in platform/contracts.ts: user_deleted, timer.fired, message_*, ...)',
  },
  LC_ERR_UNAUTHORIZED: { status: 401, meaning: 'no credential, or not the one the route requires' },
  LC_ERR_FORBIDDEN: {
    status: 403,
    meaning:
      'a credential was presented but is not known (an unknown write key, a JWT whose role claim names no role)',
  },
  LC_ERR_ROLE_FORBIDDEN: {
    status: 403,
    meaning:
      "the staff credential is valid but its role may not call this route; the message and `details.roles` name the roles that may (the route's `x-roles` in /openapi.json)",
  },
  LC_ERR_KEY_EXPIRED: {
    status: 401,
    meaning: 'the API key passed its expiry; ask an admin for a new one (`lifecycle keys create`)',
  },
  LC_ERR_KEY_REVOKED: {
    status: 401,
    meaning: 'the API key was revoked; ask an admin for a new one (`lifecycle keys create`)',
  },
  LC_ERR_NOT_FOUND: {
    status: 404,
    meaning: 'no such route, user record, template, dashboard or panel',
  },
  LC_ERR_CONFLICT: {
    status: 409,
    meaning:
      'the request is valid but what it asks for cannot be done in the current state (a message never sent or whose content expired cannot be resent; nothing earlier published to roll back to; a campaign already running; a revision someone else changed first); the message says what the state is and what is allowed',
  },
  LC_ERR_PAYLOAD_TOO_LARGE: {
    status: 413,
    meaning: 'the body or one message is larger than the configured limit',
  },
  LC_ERR_UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    meaning:
      'the body is in a Content-Type or Content-Encoding the route does not read; the message names what to send',
  },
  LC_ERR_RATE_LIMITED: {
    status: 429,
    meaning: 'the caller sent more than its rate; retry after Retry-After',
  },
  LC_ERR_UNAVAILABLE: {
    status: 503,
    meaning: 'a dependency is down or a feature is not configured; retry later or configure it',
  },
  LC_ERR_INVALID_SIGNATURE: {
    status: 401,
    meaning: 'a signed request (provider webhook) has a missing, wrong or stale signature',
  },
  LC_ERR_INTERNAL: {
    status: 500,
    meaning: 'a fault of the service itself; the details are in its log, never in the answer',
  },
  LC_ERR_KAFKA_PUBLISH: {
    status: 503,
    meaning: 'Kafka did not acknowledge a produce; nothing is reported stored, retry',
  },
  LC_ERR_KAFKA_UNAVAILABLE: { status: 503, meaning: 'the Kafka producer cannot connect' },
  LC_ERR_DECODE: {
    status: 500,
    meaning: 'bytes read from a topic are not a record of the expected schema',
  },
  LC_ERR_TEMPLATE: {
    status: 422,
    meaning: 'a template does not render for the given channel, locale and data',
  },
  LC_ERR_UNKNOWN_TEMPLATE: {
    status: 422,
    meaning:
      'a send names a template the templates folder does not hold; the message lists close names (GET /v1/templates lists all)',
  },
  LC_ERR_TEMPLATE_CHANNEL: {
    status: 422,
    meaning:
      'a send asks for a channel its template has no content for; the message lists the channels it has',
  },
  LC_ERR_UNKNOWN_USER: {
    status: 422,
    meaning:
      'a send names a userId the engine has no state for (never identified, or erased); identify the user first, or send to an address with `to`',
  },
  LC_ERR_IDEMPOTENCY_MISMATCH: {
    status: 422,
    meaning:
      'an Idempotency-Key was used within 24 hours for a request with another body or route; a new request needs a new key',
  },
  LC_ERR_IDEMPOTENCY_IN_PROGRESS: {
    status: 409,
    meaning:
      'a request with the same Idempotency-Key is still being processed; retry shortly with the same key to get its answer',
  },
  LC_ERR_TEMPLATE_INVALID: {
    status: 422,
    meaning:
      'a template version was refused on save or publish; `errors` lists each problem as {file, message}',
  },
  LC_ERR_RECIPIENT_NOT_ALLOWED: {
    status: 403,
    meaning:
      'a test send to an address outside LC_TEST_SEND_DOMAINS in production; add the domain there or send to an allowed address',
  },
  LC_ERR_REDIS: { status: 500, meaning: 'a Redis call failed or answered in an unexpected shape' },
  LC_ERR_REDIS_DURABILITY: {
    status: 500,
    meaning:
      'Redis could lose acknowledged writes (no fsync on every write, or an evicting memory policy); the process refuses to start',
  },
  LC_ERR_RULES_INVALID: {
    status: 422,
    meaning: 'a rule set does not validate; the message lists file, JSON path and problem',
  },
  LC_ERR_MESSAGE_TYPES_INVALID: {
    status: 500,
    meaning:
      'the message types file (LC_MESSAGE_TYPES_FILE) does not validate; the message lists file, JSON path and problem',
  },
  LC_ERR_UNKNOWN_MESSAGE_TYPE: {
    status: 400,
    meaning:
      'a message type named in a request is not declared in the message types file, or does not fit the category or channel asked for',
  },
  LC_ERR_ANALYTICS: {
    status: 500,
    meaning: 'an analytics (ClickHouse) query, insert or parameter failed',
  },
};

export class LifecycleError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: {
      retriable?: boolean;
      status?: number;
      cause?: unknown;
      details?: Record<string, unknown>;
    } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LifecycleError';
    this.code = code;
    this.retriable = opts.retriable ?? false;
    // The lookup may miss for a code cast in from untyped input (JavaScript callers, parsed JSON).
    this.status =
      opts.status ?? (ERROR_CODES[code] as { status: number } | undefined)?.status ?? 500;
    this.details = opts.details;
  }
}

export function isRetriable(err: unknown): boolean {
  if (err instanceof LifecycleError) return err.retriable;
  if (err && typeof err === 'object' && 'retriable' in err)
    return Boolean((err as { retriable: unknown }).retriable);
  return false;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
