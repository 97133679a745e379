// The staff API of identity and audit (role admin):
//   POST   /v1/keys          {name, role, expires?} -> 201 {key, secret}; the secret is shown here only
//   GET    /v1/keys          {keys}: every key, newest first, revoked and expired ones included
//   DELETE /v1/keys/:id      revokes the key (it stays listed, refused from the next request on)
//   GET    /v1/me            who the presented credential is (every staff role): {actor, name, role, via, expiresAt?}
//   GET    /v1/audit         {entries, next}: changes, newest first, filtered by actor, action,
//                            target, since/until; `next` is the cursor of the following page
// Key changes are audited through the HTTP kit (`req.audit`), like every staff change.
import type { FastifyInstance } from 'fastify';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { ROLES, errorResponse, requireHttpKit, type Role } from '../platform/http.ts';
import { expiryFrom, generateToken, type ApiKey, type ApiKeyStore } from './api-keys.ts';
import type { AuditLog } from './audit-log.ts';

export interface AccessRoutesOptions {
  keys: ApiKeyStore;
  audit: AuditLog;
  now?: () => number;
}

const admin = { auth: { roles: ['admin'] } } as const;
const tags = ['access'];

const ApiKeySchema = {
  type: 'object',
  required: ['id', 'name', 'role', 'prefix', 'createdAt', 'expiresAt', 'revokedAt', 'createdBy'],
  properties: {
    id: { type: 'string', description: 'Handle of the key (not a secret).' },
    name: { type: 'string' },
    role: { type: 'string', enum: [...ROLES] },
    prefix: { type: 'string', description: 'First characters of the secret, to recognise it.' },
    createdAt: { type: 'string', format: 'date-time' },
    expiresAt: { type: 'string', format: 'date-time', nullable: true },
    revokedAt: { type: 'string', format: 'date-time', nullable: true },
    createdBy: { type: 'string' },
  },
} as const;

const AuditEntrySchema = {
  type: 'object',
  properties: {
    id: { type: 'string', description: 'Position in the log (also a cursor).' },
    actor: { type: 'string' },
    actorName: { type: 'string' },
    role: { type: 'string', nullable: true },
    action: { type: 'string' },
    target: { type: 'string' },
    before: {
      description: 'The target before the change (null for a creation), secrets redacted.',
    },
    after: { description: 'The target after the change (null for a deletion), secrets redacted.' },
    requestId: { type: 'string', nullable: true },
    at: { type: 'string', format: 'date-time' },
  },
} as const;

/** `since`/`until`: an ISO time or epoch milliseconds. */
function timeParam(value: string | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms))
    throw new LifecycleError(
      ErrorCodes.BadRequest,
      `${field} "${value}" is not an ISO time or epoch milliseconds`,
      { details: { field } },
    );
  return ms;
}

export async function accessRoutes(app: FastifyInstance, opts: AccessRoutesOptions): Promise<void> {
  requireHttpKit(app);
  const now = opts.now ?? Date.now;

  // The admin pages' login: the credential typed in is checked by asking who it is.
  app.get(
    '/v1/me',
    {
      config: { auth: { roles: ROLES.filter((r) => r !== 'admin') } },
      schema: {
        tags,
        operationId: 'whoAmI',
        summary: 'Who the presented staff credential is: its actor, role and kind (never a secret)',
        response: {
          200: {
            type: 'object',
            required: ['actor', 'name', 'role', 'via'],
            additionalProperties: false,
            description: 'The credential is valid now.',
            properties: {
              actor: {
                type: 'string',
                description: 'As audit records name it: `key_...`, `jwt:<sub>`, `admin-token`.',
              },
              name: { type: 'string', description: "The key's name, the JWT's email or subject." },
              role: { type: 'string', enum: [...ROLES] },
              via: {
                type: 'string',
                enum: ['key', 'jwt', 'token'],
                description: 'An API key, a JWT of the identity provider, or LC_ADMIN_TOKEN.',
              },
              expiresAt: {
                type: 'string',
                format: 'date-time',
                description: 'When the credential stops working; absent when it does not expire.',
              },
            },
          },
        },
      },
    },
    async (req) => {
      const p = req.principal!;
      return {
        actor: p.id,
        name: p.name,
        role: p.role!,
        via: p.via ?? (p.id === 'admin-token' ? 'token' : 'key'),
        ...(p.expiresAt !== undefined ? { expiresAt: p.expiresAt } : {}),
      };
    },
  );

  app.post<{ Body: { name: string; role: Role; expires?: string } }>(
    '/v1/keys',
    {
      config: admin,
      // The validator strips unknown fields; a misspelt `expiry` must not make a key that never expires.
      preValidation: async (req) => {
        const body = req.body as Record<string, unknown> | null;
        const unknown =
          body && typeof body === 'object'
            ? Object.keys(body).filter((k) => !['name', 'role', 'expires'].includes(k))
            : [];
        if (unknown.length > 0)
          throw new LifecycleError(
            ErrorCodes.BadRequest,
            `unknown field(s) ${unknown.join(', ')}; a key takes name, role and expires`,
            { details: { field: unknown[0] } },
          );
      },
      schema: {
        tags,
        operationId: 'createApiKey',
        summary: 'Create an API key; its secret is in this answer only',
        body: {
          type: 'object',
          required: ['name', 'role'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 200 },
            role: { type: 'string', enum: [...ROLES] },
            expires: {
              type: 'string',
              description: 'A duration from now (`30d`, `12h`, `90m`, `2w`) or an ISO time.',
            },
          },
        },
        response: {
          201: {
            type: 'object',
            description: 'The key, and its secret (shown here only).',
            properties: {
              key: ApiKeySchema,
              secret: { type: 'string', description: 'The bearer token. Not stored: keep it now.' },
            },
          },
          400: errorResponse(
            'An unknown field, a role that is not one of the roles, or an expiry that is not a duration or an ISO time.',
          ),
        },
      },
    },
    async (req, reply) => {
      const at = now();
      const expiresAt = req.body.expires === undefined ? null : expiryFrom(req.body.expires, at);
      const secret = generateToken();
      const key = await opts.keys.put(
        secret,
        { name: req.body.name, role: req.body.role, expiresAt, createdBy: req.principal!.id },
        at,
      );
      try {
        await req.audit({ action: 'key.create', target: `key:${key.id}`, after: key });
      } catch (err) {
        // A key whose creation the audit log does not know of must not work: revoke it at
        // once (its secret was never shown) and say the request can be repeated.
        await opts.keys.revoke(key.id, now());
        req.log.warn({ err, keyId: key.id }, 'audit log unavailable: revoked the key just stored');
        throw new LifecycleError(
          ErrorCodes.Unavailable,
          'the audit log could not record the new key, so it was not created (stored, then revoked at once); retry when the audit log (Redis) is back',
        );
      }
      return reply.code(201).send({ key, secret });
    },
  );

  app.get(
    '/v1/keys',
    {
      config: admin,
      schema: {
        tags,
        operationId: 'listApiKeys',
        summary: 'List API keys (never their secrets)',
        response: {
          200: {
            type: 'object',
            description: 'Every key, newest first, revoked and expired ones included.',
            properties: { keys: { type: 'array', items: ApiKeySchema } },
          },
        },
      },
    },
    async () => ({ keys: await opts.keys.list() }),
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/keys/:id',
    {
      config: admin,
      schema: {
        tags,
        operationId: 'revokeApiKey',
        summary: 'Revoke an API key (refused from the next request on, on every instance)',
        params: {
          type: 'object',
          required: ['id'],
          properties: { id: { type: 'string', minLength: 1, maxLength: 100 } },
        },
        response: {
          200: {
            type: 'object',
            description: 'The key, revoked (revoking it again changes nothing).',
            properties: { key: ApiKeySchema },
          },
          404: errorResponse('No key with this id (GET /v1/keys lists them).'),
        },
      },
    },
    async (req) => {
      const change = await opts.keys.revoke(req.params.id, now());
      if (!change)
        throw new LifecycleError(
          ErrorCodes.NotFound,
          `no API key ${req.params.id}; GET /v1/keys lists their ids`,
        );
      if (change.before.revokedAt === null)
        await req.audit({
          action: 'key.revoke',
          target: `key:${change.after.id}`,
          before: change.before,
          after: change.after,
        });
      return { key: change.after satisfies ApiKey };
    },
  );

  app.get<{
    Querystring: {
      actor?: string;
      action?: string;
      target?: string;
      since?: string;
      until?: string;
      cursor?: string;
      limit: number;
    };
  }>(
    '/v1/audit',
    {
      config: admin,
      schema: {
        tags,
        operationId: 'queryAuditLog',
        summary: 'The audit log, newest first',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            actor: {
              type: 'string',
              description: 'Actor id (`key_...`, `admin-token`, `jwt:<sub>`).',
            },
            action: { type: 'string', description: 'e.g. `key.create`, `key.revoke`.' },
            target: { type: 'string', description: 'e.g. `key:<id>`.' },
            since: { type: 'string', description: 'ISO time or epoch ms, inclusive.' },
            until: { type: 'string', description: 'ISO time or epoch ms, inclusive.' },
            cursor: { type: 'string', description: 'The `next` of the previous page.' },
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          },
        },
        response: {
          200: {
            type: 'object',
            description: 'A page of changes, and the cursor of the next one (null at the end).',
            properties: {
              entries: { type: 'array', items: AuditEntrySchema },
              next: { type: 'string', nullable: true },
            },
          },
          400: errorResponse('A filter is not valid (`since`/`until`: an ISO time or epoch ms).'),
        },
      },
    },
    async (req) => {
      const q = req.query;
      const since = timeParam(q.since, 'since');
      const until = timeParam(q.until, 'until');
      return opts.audit.query({
        limit: q.limit,
        ...(q.actor !== undefined ? { actor: q.actor } : {}),
        ...(q.action !== undefined ? { action: q.action } : {}),
        ...(q.target !== undefined ? { target: q.target } : {}),
        ...(since !== undefined ? { since } : {}),
        ...(until !== undefined ? { until } : {}),
        ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
      });
    },
  );
}
