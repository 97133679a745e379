// How the ingest API refuses, on top of the HTTP kit's mapping: Segment clients read
// `{ success: false, code, message, field? }`, every refusal is counted by code, and the
// two that ask the client to come back (429, 503) say when.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ErrorCodes, type ErrorCode } from '../../platform/errors.ts';
import { CODED_ERROR_SCHEMA, type HttpFailure, type HttpKitOptions } from '../../platform/http.ts';
import type { Counter } from '../../platform/metrics.ts';

/** The body of a refusal as Segment clients expect it. */
export function failureBody(f: Pick<HttpFailure, 'code' | 'message' | 'field'>) {
  return f.field
    ? { success: false as const, code: f.code, message: f.message, field: f.field }
    : { success: false as const, code: f.code, message: f.message };
}

/**
 * The schema of `failureBody`: the kit's coded error with Segment's `success: false`, and the
 * messages a batch refused when none was valid. Every refusal of the ingest API is
 * serialized and documented with it.
 */
export const INGEST_ERROR_SCHEMA = {
  ...CODED_ERROR_SCHEMA,
  required: ['success', ...CODED_ERROR_SCHEMA.required],
  properties: {
    success: { type: 'boolean', enum: [false] },
    ...CODED_ERROR_SCHEMA.properties,
    rejected: {
      type: 'array',
      description: 'A batch of which no message is valid: each message, with its field at fault.',
      items: {
        type: 'object',
        required: ['index', 'code', 'field', 'message'],
        properties: {
          index: { type: 'integer' },
          messageId: { type: 'string' },
          code: CODED_ERROR_SCHEMA.properties.code,
          field: { type: 'string' },
          message: { type: 'string' },
        },
      },
    },
  },
} as const;

/** Refuses from inside a route (a message the route itself found invalid). */
export function fail(
  reply: FastifyReply,
  status: number,
  code: ErrorCode,
  message: string,
  field?: string,
) {
  return reply.code(status).send(failureBody(field ? { code, message, field } : { code, message }));
}

/** The kit options that make its error handler answer as the ingest API does. */
export function ingestFailures(deps: {
  rejected: Counter<'code'>;
  clock: () => number;
}): Pick<HttpKitOptions, 'failureBody' | 'failureSchema' | 'onFailure' | 'mediaTypeHint'> {
  return {
    failureBody,
    failureSchema: INGEST_ERROR_SCHEMA,
    mediaTypeHint: 'send the body as application/json (or text/plain holding JSON)',
    onFailure(f: HttpFailure, _req: FastifyRequest, reply: FastifyReply) {
      // A fault of the server is no refusal of the request: it is logged, not counted.
      if (f.code !== ErrorCodes.Internal) deps.rejected.inc({ code: f.code });
      if (f.status === 503 || f.status === 429) {
        const seconds = Number(f.details?.retryAfterSeconds ?? 1);
        void reply.header('Retry-After', String(seconds));
        // analytics-node waits until this epoch-ms instant before retrying a 429.
        void reply.header(
          'X-RateLimit-Reset',
          String(deps.clock() + Number(f.details?.retryAfterMs ?? seconds * 1000)),
        );
      }
    },
  };
}
