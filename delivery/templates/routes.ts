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
import { requireHttpKit } from '../../platform/http.ts';
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

  app.get('/v1/templates', { config: marketer }, async () => ({
    templates: opts.renderer
      .names()
      .map((name) => ({ name, channels: opts.renderer.channels(name) })),
  }));

  app.get('/v1/templates/validate', { config: marketer }, async () => ({
    errors: opts.renderer.validate(),
  }));

  app.post('/v1/templates/:name/preview', { config: marketer }, async (req, reply) => {
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
