// User lookup for support staff (roles support, admin):
//   GET /v1/users/:userId   the user as the engine sees them: traits, segment memberships, event
//                           stats and rule history (404 for a user the engine never saw or erased)
// The engine's state is read through the UserDirectory port (platform/users.ts), never written.
import type { FastifyInstance } from 'fastify';
import { ErrorCodes } from '../platform/errors.ts';
import { requireHttpKit } from '../platform/http.ts';
import type { UserDirectory } from '../platform/users.ts';

export interface UserRoutesOptions {
  users: UserDirectory;
}

const support = { auth: { roles: ['support'] } } as const;

const ProfileSchema = {
  type: 'object',
  required: ['userId', 'traits', 'stats', 'segments', 'rules'],
  properties: {
    userId: { type: 'string' },
    traits: { type: 'object', additionalProperties: true },
    stats: {
      type: 'object',
      description: 'Per event type: count, first and last time (epoch ms).',
      additionalProperties: {
        type: 'object',
        properties: {
          count: { type: 'integer' },
          first: { type: 'integer', nullable: true },
          last: { type: 'integer', nullable: true },
        },
      },
    },
    segments: { type: 'array', items: { type: 'string' } },
    rules: {
      type: 'object',
      description: 'Rule id -> fires and the last time it fired (epoch ms).',
      additionalProperties: {
        type: 'object',
        properties: {
          fires: { type: 'integer' },
          lastFiredAt: { type: 'integer', nullable: true },
        },
      },
    },
  },
} as const;

export async function userRoutes(app: FastifyInstance, opts: UserRoutesOptions): Promise<void> {
  requireHttpKit(app);
  app.get<{ Params: { userId: string } }>(
    '/v1/users/:userId',
    {
      config: support,
      schema: {
        tags: ['users'],
        summary: 'A user as the engine sees them',
        params: {
          type: 'object',
          required: ['userId'],
          properties: { userId: { type: 'string', minLength: 1, maxLength: 512 } },
        },
        response: {
          200: { type: 'object', properties: { profile: ProfileSchema } },
        },
      },
    },
    async (req, reply) => {
      const profile = await opts.users.profile(req.params.userId);
      if (!profile)
        return reply.code(404).send({
          code: ErrorCodes.NotFound,
          message: `no user "${req.params.userId}": the engine has no state for this id (never seen, or erased)`,
        });
      return { profile };
    },
  );
}
