// Admin API over the templates, for managers' pages (staff role marketer):
//   GET  /v1/templates                      names, channels and locales of every template
//   GET  /v1/templates/validate             {errors: [{file, message}]}; what `lifecycle templates validate` prints
//   POST /v1/templates/:name/preview        {channel, locale, data?} -> the rendered content; `data` overlays
//                                           the template's sample.json key by key; 422 with the reason when it
//                                           does not render (a missing variable, an unknown template)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { CHANNELS, type Channel } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import { errorResponse, requireHttpKit } from '../../platform/http.ts';
import { SAMPLE_LINKS, type TemplateRenderer } from './index.ts';

export interface TemplateRoutesOptions {
  renderer: TemplateRenderer;
  /** The templates folder, to read each template's sample.json. */
  dir: string;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** Overlays `over` on `base` key by key, recursing into objects (arrays and values replace). */
export function overlay(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') continue;
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? overlay(b, v) : v;
  }
  return out;
}

/** The data a preview renders with: placeholder links, the sample, then the caller's overrides. */
export function previewData(
  dir: string,
  name: string,
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  let sample: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(readFileSync(join(dir, name, 'sample.json'), 'utf8'));
    if (isPlainObject(parsed)) sample = parsed;
  } catch {
    // No (valid) sample: the preview runs on the caller's data alone; validate reports the file.
  }
  return overlay({ links: SAMPLE_LINKS, ...sample }, over);
}

export async function templateRoutes(
  app: FastifyInstance,
  opts: TemplateRoutesOptions,
): Promise<void> {
  requireHttpKit(app);
  const marketer = { auth: { roles: ['marketer'] } } as const;

  const tags = ['templates'];
  const nameParam = {
    type: 'object',
    required: ['name'],
    properties: { name: { type: 'string', description: 'The template (its folder name).' } },
  } as const;

  app.get(
    '/v1/templates',
    {
      config: marketer,
      schema: {
        operationId: 'listTemplates',
        summary: 'Every template, with the channels it has content for',
        tags,
        response: {
          200: {
            type: 'object',
            required: ['templates'],
            description: 'The templates of the templates folder, by name.',
            properties: {
              templates: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['name', 'channels'],
                  properties: {
                    name: { type: 'string' },
                    channels: { type: 'array', items: { type: 'string', enum: [...CHANNELS] } },
                  },
                },
              },
            },
          },
        },
      },
    },
    async () => ({
      templates: opts.renderer
        .names()
        .map((name) => ({ name, channels: opts.renderer.channels(name) })),
    }),
  );

  app.get(
    '/v1/templates/validate',
    {
      config: marketer,
      schema: {
        operationId: 'validateTemplates',
        summary: 'Every problem of the templates folder (what `lifecycle templates validate` prints)',
        description: 'Each template file is rendered against its sample.json.',
        tags,
        response: {
          200: {
            type: 'object',
            required: ['errors'],
            description: 'The problems, each with its file; none when the folder is valid.',
            properties: {
              errors: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['file', 'message'],
                  properties: { file: { type: 'string' }, message: { type: 'string' } },
                },
              },
            },
          },
        },
      },
    },
    async () => ({ errors: opts.renderer.validate() }),
  );

  app.post(
    '/v1/templates/:name/preview',
    {
      config: marketer,
      schema: {
        operationId: 'previewTemplate',
        summary: 'Render a template for a channel and locale, over its sample data',
        description:
          '`data` overlays the sample.json of the template key by key; links are placeholders.',
        tags,
        params: nameParam,
        body: {
          type: 'object',
          nullable: true,
          description: 'Everything is optional: email, `en` and the sample data alone by default.',
          properties: {
            channel: { type: 'string', enum: [...CHANNELS], default: 'email' },
            locale: { type: 'string', description: 'e.g. `de`, `pt-BR` (default `en`).' },
            data: {
              type: 'object',
              additionalProperties: true,
              description: 'user, event, rule, ...: overlaid on the sample.',
            },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['template', 'channel', 'locale', 'content'],
            description: 'The rendered content (for email: subject, html, text).',
            properties: {
              template: { type: 'string' },
              channel: { type: 'string' },
              locale: { type: 'string' },
              content: { type: 'object', additionalProperties: true },
            },
          },
          400: errorResponse('`channel`, `locale` or `data` is not valid; the message says which.'),
          404: errorResponse('No template of this name (GET /v1/templates lists them).'),
          422: errorResponse(
            'The template does not render for this channel, locale and data (LC_ERR_TEMPLATE); `details` names them.',
          ),
        },
      },
    },
    async (req, reply) => {
    const { name } = req.params as { name: string };
    const body = (req.body ?? {}) as { channel?: unknown; locale?: unknown; data?: unknown };
    const channel = body.channel ?? 'email';
    if (typeof channel !== 'string' || !(CHANNELS as readonly string[]).includes(channel)) {
      return reply
        .code(400)
        .send({
          code: ErrorCodes.BadRequest,
          message: `channel must be one of ${CHANNELS.join(', ')}`,
        });
    }
    if (body.locale !== undefined && typeof body.locale !== 'string')
      return reply
        .code(400)
        .send({
          code: ErrorCodes.BadRequest,
          message: 'locale must be a string such as "de" or "pt-BR"',
        });
    if (body.data !== undefined && !isPlainObject(body.data))
      return reply
        .code(400)
        .send({
          code: ErrorCodes.BadRequest,
          message: 'data must be a JSON object (user, event, rule, ...)',
        });
    if (!opts.renderer.has(name))
      return reply.code(404).send({ code: ErrorCodes.NotFound, message: `no template "${name}"` });
    try {
      const content = opts.renderer.render(
        name,
        channel as Channel,
        body.locale ?? 'en',
        previewData(opts.dir, name, body.data ?? {}),
      );
      return { template: name, channel, locale: body.locale ?? 'en', content };
    } catch (err) {
      if (err instanceof LifecycleError)
        return reply.code(422).send({ code: err.code, message: err.message, details: err.details });
      throw err;
    }
  });
}
