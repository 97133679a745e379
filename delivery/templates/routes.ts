// Admin API over the managed templates, for managers' pages (staff role marketer; admin):
//   GET  /v1/templates                        every template: channels, latest version, publication
//   GET  /v1/templates/validate               {errors: [{file, message}]}: layouts, partials and each latest version
//   GET  /v1/templates/:name                  its versions (author, message, time, hash) and publication
//   GET  /v1/templates/:name/versions/:n      one version with its files
//   POST /v1/templates/:name/versions         {files, message, from?} -> 201 a new version; 422 with each
//                                             problem {file, message} when it does not validate
//   POST /v1/templates/:name/publish          {version, channels?, locales?}: what sends render from now on
//   POST /v1/templates/:name/rollback         {channels?, locales?}: each entry back to the version before
//   GET  /v1/templates/:name/diff?from&to     unified diff per file between two versions
//   POST /v1/templates/:name/preview          {channel, locale?, version?, userId? | data?} -> the rendered content
//   POST /v1/templates/:name/test-send        {to, channel?, locale?, version?, userId? | data?} -> a transactional
//                                             send of that version to `to` (LC_TEST_SEND_DOMAINS in production)
// Saves, publishes, rollbacks and test sends are in the audit log with versions and hashes, never
// the files themselves.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Publisher } from '../../platform/bus.ts';
import { encodeWithHeader, sendCodec } from '../../platform/avro.ts';
import { CHANNELS, type Channel, type SendCommand } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import { ERROR_SCHEMA_ID, errorResponse, requireHttpKit } from '../../platform/http.ts';
import type { UserDirectory } from '../../platform/users.ts';
import { TRANSACTIONAL } from '../preferences/model.ts';
import { diffVersions } from './diff.ts';
import { SAMPLE_LINKS, type TemplateRenderer } from './index.ts';
import { isTemplateFileName, isTemplateName } from './loader.ts';
import { infoOf, type TemplateStore } from './store.ts';
import type { TemplateVersion } from './versions.ts';

export interface TemplateRoutesOptions {
  /** The managed templates of this process: the store read from the topic and its renderer. */
  templates: { store: TemplateStore; renderer: TemplateRenderer };
  /** Users as the engine sees them: previews and test sends for a real user. */
  users: UserDirectory;
  /** Where test sends go (the sends topic). */
  sends: { publisher: Publisher; topic: string };
  /** Test sends in production go only to these email domains (LC_TEST_SEND_DOMAINS). */
  testSends: { production: boolean; domains: readonly string[] };
  now?: () => number;
}

const marketer = { auth: { roles: ['marketer'] } } as const;
const tags = ['templates'];
/** A version may carry large HTML (inline images): up to this much JSON per save. */
const SAVE_BODY_LIMIT = 6 * 1024 * 1024;
/** A test send not delivered within this time is dropped, not sent when no one waits for it. */
const TEST_SEND_TTL_MS = 3_600_000;

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

/** A template's sample data from its files (`sample.json`), or nothing when it has none or a broken one. */
export function sampleOf(files: Readonly<Record<string, string>>): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(files['sample.json'] ?? '{}');
    return isPlainObject(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

/** The data a preview renders with: placeholder links, the sample, then the caller's overrides. */
export function previewData(
  files: Readonly<Record<string, string>>,
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  return overlay({ links: SAMPLE_LINKS, ...sampleOf(files) }, over);
}

// ---- schemas (OpenAPI) ----

const ProblemSchema = {
  type: 'object',
  properties: { file: { type: 'string' }, message: { type: 'string' } },
} as const;

/** A refused version: the coded error, with each problem and the file it is in. */
const invalidResponse = {
  description: 'The version was not saved: each problem with the file it is in.',
  content: {
    'application/json': {
      schema: {
        allOf: [
          { $ref: `${ERROR_SCHEMA_ID}#` },
          {
            type: 'object',
            properties: {
              errors: { type: 'array', items: ProblemSchema },
              warnings: { type: 'array', items: ProblemSchema },
            },
          },
        ],
      },
    },
  },
};

const VersionInfoSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    version: { type: 'integer' },
    author: { type: 'string', description: 'Who saved it (an API key id, a JWT subject) or `files:templates/`.' },
    message: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    hash: { type: 'string', description: '`sha256:<hex>` of the file names and contents.' },
  },
} as const;

const FilesSchema = {
  type: 'object',
  description: 'File name -> text: `<channel>.<locale>.hbs`, `email.<locale>.txt.hbs`, `sample.json`.',
  additionalProperties: { type: 'string' },
} as const;

const PublicationSchema = {
  type: 'object',
  description:
    'channel -> locale -> version; locale `*` is every locale without an entry of its own.',
  additionalProperties: { type: 'object', additionalProperties: { type: 'integer' } },
} as const;

const ChangeSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    changes: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          channel: { type: 'string' },
          locale: { type: 'string' },
          from: { type: 'integer', nullable: true },
          to: { type: 'integer', nullable: true },
        },
      },
    },
    published: PublicationSchema,
  },
} as const;

const NameParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', description: 'Template name (what rules refer to).' } },
} as const;

const ChannelsLocales = {
  channels: {
    type: 'array',
    items: { type: 'string', enum: [...CHANNELS] },
    minItems: 1,
    description: 'Default: every channel the version has (publish), every published channel (rollback).',
  },
  locales: {
    type: 'array',
    items: { type: 'string', minLength: 1, maxLength: 35 },
    minItems: 1,
    description: 'Locales (`de`, `pt-BR`) or `*` (every locale without its own entry; the default).',
  },
} as const;

const RenderRequest = {
  channel: { type: 'string', enum: [...CHANNELS] },
  locale: {
    type: 'string',
    description: "Recipient locale; default: the user's `locale` trait, else `en`.",
  },
  version: {
    type: 'integer',
    minimum: 1,
    description: 'Default: the version published for the channel and locale (else the latest).',
  },
  userId: {
    type: 'string',
    minLength: 1,
    description: "Render for this user: their traits as the engine sees them become `user`.",
  },
  data: {
    type: 'object',
    additionalProperties: true,
    description: 'Data over the sample (user, event, rule), key by key.',
  },
} as const;

const ContentSchema = {
  type: 'object',
  additionalProperties: true,
  description: 'subject, html, text (email); title, body, url (in-app, push); body (SMS); data (webhook).',
} as const;

// ---- routes ----

export async function templateRoutes(
  app: FastifyInstance,
  opts: TemplateRoutesOptions,
): Promise<void> {
  requireHttpKit(app);
  const { store, renderer } = opts.templates;
  const now = opts.now ?? Date.now;

  const known = (name: string): TemplateVersion => {
    const latest = store.latest(name);
    if (!latest)
      throw new LifecycleError(
        ErrorCodes.NotFound,
        `no template "${name}" (have: ${store.names().join(', ') || 'none'})`,
      );
    return latest;
  };
  const versionOf = (name: string, n: number): TemplateVersion => {
    const latest = known(name);
    const v = store.version(name, n);
    if (!v)
      throw new LifecycleError(
        ErrorCodes.NotFound,
        `template "${name}" has no version ${n} (latest: ${latest.version})`,
        { details: { field: 'version' } },
      );
    return v;
  };
  const published = (name: string) => store.publication(name)?.channels ?? {};

  app.get(
    '/v1/templates',
    {
      config: marketer,
      schema: {
        tags,
        summary: 'Every managed template with its channels, latest version and publication',
        response: {
          200: {
            type: 'object',
            properties: {
              templates: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    name: { type: 'string' },
                    channels: { type: 'array', items: { type: 'string' } },
                    latest: VersionInfoSchema,
                    published: PublicationSchema,
                  },
                },
              },
            },
          },
        },
      },
    },
    async () => ({
      templates: store.names().map((name) => ({
        name,
        channels: renderer.channels(name),
        latest: infoOf(store.latest(name)!),
        published: published(name),
      })),
    }),
  );

  app.get(
    '/v1/templates/validate',
    {
      config: marketer,
      schema: {
        tags,
        summary: 'Every problem of layouts, partials and each template’s latest version',
        response: {
          200: { type: 'object', properties: { errors: { type: 'array', items: ProblemSchema } } },
        },
      },
    },
    async () => ({ errors: renderer.validate() }),
  );

  app.get<{ Params: { name: string } }>(
    '/v1/templates/:name',
    {
      config: marketer,
      schema: {
        tags,
        summary: 'A template’s versions (oldest first) and what is published',
        params: NameParams,
        response: {
          200: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              versions: { type: 'array', items: VersionInfoSchema },
              published: PublicationSchema,
            },
          },
          404: errorResponse('No such template, version or user.'),
        },
      },
    },
    async (req) => {
      known(req.params.name);
      return {
        name: req.params.name,
        versions: store.versions(req.params.name),
        published: published(req.params.name),
      };
    },
  );

  app.get<{ Params: { name: string; version: number } }>(
    '/v1/templates/:name/versions/:version',
    {
      config: marketer,
      schema: {
        tags,
        summary: 'One version of a template with its files',
        params: {
          type: 'object',
          required: ['name', 'version'],
          properties: { name: { type: 'string' }, version: { type: 'integer', minimum: 1 } },
        },
        response: {
          200: {
            type: 'object',
            properties: { ...VersionInfoSchema.properties, files: FilesSchema },
          },
          404: errorResponse('No such template, version or user.'),
        },
      },
    },
    async (req) => versionOf(req.params.name, req.params.version),
  );

  app.post<{
    Params: { name: string };
    Body: { files: Record<string, string | null>; message: string; from?: number };
  }>(
    '/v1/templates/:name/versions',
    {
      config: marketer,
      bodyLimit: SAVE_BODY_LIMIT,
      schema: {
        tags,
        summary: 'Save a new version (validated; not published until you publish it)',
        description:
          'The files of the new version: all of them, or with `from` the changes to that version (a file set to null is removed). Refused with 422 and each problem {file, message} when it does not pass `templates validate` or uses a variable that neither sample.json nor the data every message gets provides; `warnings` are shown but do not refuse.',
        params: NameParams,
        body: {
          type: 'object',
          required: ['files', 'message'],
          properties: {
            files: {
              type: 'object',
              additionalProperties: { type: 'string', nullable: true },
              description: 'File name -> text (null with `from`: remove the file).',
            },
            message: {
              type: 'string',
              minLength: 1,
              maxLength: 500,
              description: 'Why: shown in the version list.',
            },
            from: { type: 'integer', minimum: 1, description: 'Start from this version’s files.' },
          },
        },
        response: {
          201: {
            type: 'object',
            properties: {
              version: VersionInfoSchema,
              warnings: { type: 'array', items: ProblemSchema },
            },
          },
          400: errorResponse('A bad field: the message names it.'),
          404: errorResponse('No such template, version or user.'),
          422: invalidResponse,
        },
      },
    },
    async (req, reply) => {
      const { name } = req.params;
      if (!isTemplateName(name))
        throw new LifecycleError(
          ErrorCodes.BadRequest,
          'template names use letters, digits, `_` and `-` only (and are not `layouts` or `partials`)',
          { details: { field: 'name' } },
        );
      const base = req.body.from === undefined ? {} : versionOf(name, req.body.from).files;
      const files: Record<string, string> = { ...base };
      for (const [file, text] of Object.entries(req.body.files)) {
        if (!isTemplateFileName(file))
          throw new LifecycleError(
            ErrorCodes.BadRequest,
            `file name "${file}" is not one a template folder holds (e.g. email.en.hbs, sample.json)`,
            { details: { field: `files.${file}` } },
          );
        if (text === null) delete files[file];
        else files[file] = text;
      }
      const check = renderer.checkFiles(name, files);
      if (check.errors.length > 0)
        return reply.code(422).send({
          code: ErrorCodes.TemplateInvalid,
          message: `the version was not saved: ${check.errors.length} problem(s), each listed with its file`,
          errors: check.errors,
          warnings: check.warnings,
          // The same under `details`, where clients read what a coded refusal adds.
          details: { errors: check.errors, warnings: check.warnings },
        });
      const before = store.latest(name);
      const saved = await store.save({
        name,
        files,
        author: req.principal!.id,
        message: req.body.message,
      });
      await req.audit({
        action: 'template.save',
        target: `template:${name}`,
        before: before ? { version: before.version, hash: before.hash } : null,
        after: { version: saved.version, hash: saved.hash, message: saved.message },
      });
      return reply.code(201).send({ version: infoOf(saved), warnings: check.warnings });
    },
  );

  app.post<{
    Params: { name: string };
    Body: { version: number; channels?: Channel[]; locales?: string[] };
  }>(
    '/v1/templates/:name/publish',
    {
      config: marketer,
      schema: {
        tags,
        summary: 'Publish a version: the next sends of those channels and locales render it',
        params: NameParams,
        body: {
          type: 'object',
          required: ['version'],
          properties: { version: { type: 'integer', minimum: 1 }, ...ChannelsLocales },
        },
        response: {
          200: ChangeSchema,
          400: errorResponse('A bad version, channel or locale: the message names it.'),
          404: errorResponse('No such template or version.'),
          422: errorResponse('The version cannot be published: it does not render.'),
        },
      },
    },
    async (req) => {
      const { name } = req.params;
      versionOf(name, req.body.version);
      const change = await store.publish({
        name,
        version: req.body.version,
        ...(req.body.channels ? { channels: req.body.channels } : {}),
        ...(req.body.locales ? { locales: req.body.locales } : {}),
        actor: req.principal!.id,
      });
      if (change.changes.length > 0)
        await req.audit({
          action: 'template.publish',
          target: `template:${name}`,
          before: { published: change.before },
          after: {
            version: req.body.version,
            hash: store.version(name, req.body.version)!.hash,
            published: change.after,
          },
        });
      return { name, changes: change.changes, published: change.after };
    },
  );

  app.post<{ Params: { name: string }; Body: { channels?: Channel[]; locales?: string[] } }>(
    '/v1/templates/:name/rollback',
    {
      config: marketer,
      schema: {
        tags,
        summary: 'Publish again, per channel and locale, the version published before the current one',
        params: NameParams,
        body: { type: 'object', properties: { ...ChannelsLocales } },
        response: {
          200: ChangeSchema,
          404: errorResponse('No such template.'),
          409: errorResponse('LC_ERR_CONFLICT: nothing earlier was published to roll back to.'),
        },
      },
    },
    async (req) => {
      const { name } = req.params;
      known(name);
      const change = await store.rollback({
        name,
        ...(req.body?.channels ? { channels: req.body.channels } : {}),
        ...(req.body?.locales ? { locales: req.body.locales } : {}),
        actor: req.principal!.id,
      });
      await req.audit({
        action: 'template.rollback',
        target: `template:${name}`,
        before: { published: change.before },
        after: { published: change.after },
      });
      return { name, changes: change.changes, published: change.after };
    },
  );

  app.get<{ Params: { name: string }; Querystring: { from: number; to: number } }>(
    '/v1/templates/:name/diff',
    {
      config: marketer,
      schema: {
        tags,
        summary: 'What changed between two versions, as a unified diff per file',
        params: NameParams,
        querystring: {
          type: 'object',
          required: ['from', 'to'],
          properties: {
            from: { type: 'integer', minimum: 1 },
            to: { type: 'integer', minimum: 1 },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              from: VersionInfoSchema,
              to: VersionInfoSchema,
              files: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    file: { type: 'string' },
                    change: { type: 'string', enum: ['added', 'removed', 'changed'] },
                    patch: { type: 'string' },
                  },
                },
              },
            },
          },
          400: errorResponse('A bad field: the message names it.'),
          404: errorResponse('No such template, version or user.'),
        },
      },
    },
    async (req) => {
      const { name } = req.params;
      const from = versionOf(name, req.query.from);
      const to = versionOf(name, req.query.to);
      return { name, from: infoOf(from), to: infoOf(to), files: diffVersions(from, to) };
    },
  );

  interface RenderBody {
    channel?: Channel;
    locale?: string;
    version?: number;
    userId?: string;
    data?: Record<string, unknown>;
  }

  /** The traits of `userId` as the engine sees them, or a 404 that says why there are none. */
  async function traitsOf(userId: string): Promise<Record<string, unknown>> {
    const profile = await opts.users.profile(userId);
    if (!profile)
      throw new LifecycleError(
        ErrorCodes.NotFound,
        `no user "${userId}": the engine has no state for them (never seen, or erased)`,
        { details: { field: 'userId' } },
      );
    return profile.traits;
  }

  /** The version, locale and data a preview or test send renders with. */
  async function renderInput(name: string, body: RenderBody, channel: Channel) {
    const latest = known(name);
    if (body.userId !== undefined && body.data !== undefined)
      throw new LifecycleError(
        ErrorCodes.BadRequest,
        'give either userId (render for that user) or data (render for sample data), not both',
        { details: { field: 'data' } },
      );
    const traits = body.userId !== undefined ? await traitsOf(body.userId) : undefined;
    const traitLocale = typeof traits?.locale === 'string' ? traits.locale : undefined;
    const locale = body.locale ?? traitLocale ?? 'en';
    let version = body.version;
    if (version === undefined) {
      try {
        version = renderer.versionFor(name, channel, locale) ?? latest.version;
      } catch {
        // Nothing published yet: the latest version is what there is to look at.
        version = latest.version;
      }
    }
    const files = versionOf(name, version).files;
    const data = previewData(files, body.data ?? {});
    // A real user's traits replace the sample user whole: a trait they lack must show up as
    // the missing variable it would be at send time, not be filled in from the sample.
    if (traits) data.user = { ...traits };
    return { version, locale, data };
  }

  const renderFailure = (reply: FastifyReply, err: unknown) => {
    if (err instanceof LifecycleError && err.code === ErrorCodes.Template)
      return reply.code(422).send({ code: err.code, message: err.message, details: err.details });
    throw err;
  };

  /** A draft's files rendered for a user or sample data: the editor's live preview of unsaved text. */
  async function renderDraft(
    name: string,
    body: RenderBody & { files: Record<string, string> },
    channel: Channel,
  ) {
    if (body.version !== undefined)
      throw new LifecycleError(
        ErrorCodes.BadRequest,
        'give either files (render a draft) or version (render a saved version), not both',
        { details: { field: 'version' } },
      );
    if (body.userId !== undefined && body.data !== undefined)
      throw new LifecycleError(
        ErrorCodes.BadRequest,
        'give either userId (render for that user) or data (render for sample data), not both',
        { details: { field: 'data' } },
      );
    for (const file of Object.keys(body.files))
      if (!isTemplateFileName(file))
        throw new LifecycleError(
          ErrorCodes.BadRequest,
          `file name "${file}" is not one a template folder holds (e.g. email.en.hbs, sample.json)`,
          { details: { field: `files.${file}` } },
        );
    const traits = body.userId !== undefined ? await traitsOf(body.userId) : undefined;
    const traitLocale = typeof traits?.locale === 'string' ? traits.locale : undefined;
    const locale = body.locale ?? traitLocale ?? 'en';
    const data = previewData(body.files, body.data ?? {});
    if (traits) data.user = { ...traits };
    return { locale, content: renderer.renderFiles(name, body.files, channel, locale, data) };
  }

  app.post<{
    Params: { name: string };
    Body: RenderBody & { files?: Record<string, string> };
  }>(
    '/v1/templates/:name/preview',
    {
      config: marketer,
      bodyLimit: SAVE_BODY_LIMIT,
      schema: {
        tags,
        summary: 'Render a version for a real user (their traits and locale) or for sample data',
        description:
          'With `files`, renders that draft instead of a saved version (the editor’s live preview: nothing is saved, and the template need not exist yet); the answer’s `version` is then null.',
        params: NameParams,
        body: {
          type: 'object',
          properties: {
            ...RenderRequest,
            files: {
              type: 'object',
              additionalProperties: { type: 'string' },
              description:
                'A draft: file name -> text, all the files of the template as the editor holds them (email.en.hbs, sample.json, ...).',
            },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              template: { type: 'string' },
              version: { type: 'integer', nullable: true },
              channel: { type: 'string' },
              locale: { type: 'string' },
              content: ContentSchema,
            },
          },
          400: errorResponse('A bad field: the message names it.'),
          404: errorResponse('No such template, version or user.'),
          422: errorResponse('The template does not render with this data: `details` says where.'),
        },
      },
    },
    async (req, reply) => {
      const { name } = req.params;
      const body = req.body ?? {};
      const channel = body.channel ?? 'email';
      if (body.files !== undefined) {
        try {
          const { locale, content } = await renderDraft(name, { ...body, files: body.files }, channel);
          return { template: name, version: null, channel, locale, content };
        } catch (err) {
          return renderFailure(reply, err);
        }
      }
      const { version, locale, data } = await renderInput(name, body, channel);
      try {
        const content = renderer.render(name, channel, locale, data, version);
        return { template: name, version, channel, locale, content };
      } catch (err) {
        return renderFailure(reply, err);
      }
    },
  );

  app.post<{ Params: { name: string }; Body: RenderBody & { to: string } }>(
    '/v1/templates/:name/test-send',
    {
      config: marketer,
      schema: {
        tags,
        summary: 'Send a version to an address you name (a transactional email, marked as a test)',
        description:
          'Renders like a preview (a real user or sample data), checks that it renders, then publishes a send pinned to that version, with `origin: test:<your key id>`, to the address in `to`. With NODE_ENV=production only addresses of the domains in LC_TEST_SEND_DOMAINS may receive it.',
        params: NameParams,
        body: {
          type: 'object',
          required: ['to'],
          properties: {
            to: { type: 'string', minLength: 3, maxLength: 320, description: 'Email address.' },
            ...RenderRequest,
            channel: { type: 'string', enum: ['email'], description: 'Test sends are emails.' },
          },
        },
        response: {
          202: {
            type: 'object',
            properties: {
              sendId: { type: 'string' },
              template: { type: 'string' },
              version: { type: 'integer' },
              channel: { type: 'string' },
              to: { type: 'string' },
            },
          },
          400: errorResponse('A bad field: the message names it.'),
          403: errorResponse('LC_ERR_RECIPIENT_NOT_ALLOWED: in production, only addresses of LC_TEST_SEND_DOMAINS.'),
          404: errorResponse('No such template, version or user.'),
          422: errorResponse('The template does not render for this recipient, or the version is invalid.'),
        },
      },
    },
    async (req, reply) => {
      const { name } = req.params;
      const to = req.body.to.trim();
      const at = to.lastIndexOf('@');
      if (at < 1 || at === to.length - 1 || /\s/.test(to))
        throw new LifecycleError(ErrorCodes.BadRequest, `"${to}" is not an email address`, {
          details: { field: 'to' },
        });
      const domain = to.slice(at + 1).toLowerCase();
      if (opts.testSends.production) {
        const allowed = opts.testSends.domains.map((d) => d.toLowerCase().replace(/^@/, ''));
        if (!allowed.some((d) => domain === d || domain.endsWith(`.${d}`)))
          throw new LifecycleError(
            ErrorCodes.RecipientNotAllowed,
            allowed.length === 0
              ? 'test sends are off in production: set LC_TEST_SEND_DOMAINS to the email domains that may receive them'
              : `test sends in production go only to addresses at ${allowed.join(', ')} (LC_TEST_SEND_DOMAINS); "${domain}" is not one of them`,
            { details: { field: 'to' } },
          );
      }
      const channel: Channel = 'email';
      const { version, locale, data } = await renderInput(name, req.body, channel);
      const user = { ...(isPlainObject(data.user) ? data.user : {}), email: to, locale };
      const sendData: Record<string, unknown> = { ...data, user };
      delete sendData.links;
      // Refuse here what delivery would dead-letter: the marketer sees why at once.
      try {
        renderer.render(name, channel, locale, { ...sendData, links: SAMPLE_LINKS }, version);
      } catch (err) {
        return renderFailure(reply, err);
      }
      const actor = req.principal!.id;
      const sendId = `test-${randomUUID()}`;
      const createdAt = now();
      const send: SendCommand = {
        sendId,
        ruleId: 'template-test',
        userId: `test:${actor}`,
        category: TRANSACTIONAL,
        priority: 100,
        template: name,
        channels: [channel],
        variant: null,
        holdout: false,
        triggeredBy: { eventId: sendId, eventType: 'template.test_send' },
        createdAt,
        expiresAt: createdAt + TEST_SEND_TTL_MS,
        data: sendData,
        templateVersion: version,
        origin: `test:${actor}`,
      };
      await opts.sends.publisher.publish(opts.sends.topic, [
        { key: send.userId, ...encodeWithHeader(sendCodec, send) },
      ]);
      await req.audit({
        action: 'template.test_send',
        target: `template:${name}`,
        after: { sendId, version, channel, to, userId: req.body.userId ?? null },
      });
      return reply.code(202).send({ sendId, template: name, version, channel, to });
    },
  );
}

