// Templates: renders the content managers' handlebars files per channel and locale (with
// fallback user locale -> language -> default), in strict mode, and validates them.
import { watch as watchFs, type FSWatcher } from 'node:fs';
import Handlebars from 'handlebars';
import type { Logger } from 'pino';
import type { Channel } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import type { RenderedContent } from '../provider.ts';
import { registerHelpers } from './helpers.ts';
import { htmlToText } from './html-to-text.ts';
import { linkMatcher, type WrittenLinks } from './written-links.ts';
import {
  loadTemplates,
  localeKey,
  type LoadedSet,
  type LoadedTemplate,
  type Part,
  type PartKind,
  type TemplateError,
} from './loader.ts';

export type { TemplateError } from './loader.ts';
export { htmlToText } from './html-to-text.ts';

export interface TemplateRendererOptions {
  dir: string;
  /** Missing variables are errors (default). Off only for drafting. */
  strict?: boolean;
  /** Last step of the locale fallback (default `en`). */
  defaultLocale?: string;
  /** Timezone for dates when the data has no `user.timezone` (default UTC). */
  defaultTimezone?: string;
  /** Reload when files in the folder change (content managers' edits go live without a restart). */
  watch?: boolean;
}

export interface TemplateRenderer {
  /** Throws LifecycleError(LC_ERR_TEMPLATE) for a missing template/channel or a missing variable. */
  render(
    template: string,
    channel: Channel,
    locale: string,
    data: Record<string, unknown>,
  ): RenderedContent;
  has(template: string): boolean;
  /**
   * Whether a rendered link was written in the templates folder (see written-links.ts), as
   * opposed to taken from the data: only those are tracked.
   */
  isTemplateLink(url: string): boolean;
  names(): string[];
  /** Channels the template has content for (webhook is always available: it carries the data). */
  channels(template: string): Channel[];
  /** Every problem in the folder, each as `file: message`; renders each file against its sample data. */
  validate(): TemplateError[];
  /** Re-reads the folder. A file that no longer parses keeps its last good version. */
  reload(): void;
  /** Stops watching the folder (when `watch` was on). */
  close(): void;
}

/** Placeholder links for validation and previews; the pipeline provides the real signed ones. */
export const SAMPLE_LINKS = {
  unsubscribe: 'https://example.com/u/sample-unsubscribe',
  preferences: 'https://example.com/p/sample-preferences',
};

const CHANNEL_PART: Record<Exclude<Channel, 'webhook'>, PartKind> = {
  email: 'email',
  inapp: 'inapp',
  push: 'push',
  sms: 'sms',
};

const RUNTIME = {
  allowProtoPropertiesByDefault: false,
  allowProtoMethodsByDefault: false,
} as const;

const chains = new Map<string, string[]>();

/** `de-AT` -> [`de-at`, `de`, default]: the user's locale, its language, the default. */
export function localeChain(locale: string, defaultLocale: string): string[] {
  const key = `${locale}\u0000${defaultLocale}`;
  let chain = chains.get(key);
  if (!chain) {
    if (chains.size > 1000) chains.clear();
    chains.set(key, (chain = buildLocaleChain(locale, defaultLocale)));
  }
  return chain;
}

function buildLocaleChain(locale: string, defaultLocale: string): string[] {
  const out: string[] = [];
  const key = localeKey(locale || defaultLocale);
  const parts = key.split('-');
  for (let i = parts.length; i >= 1; i--) out.push(parts.slice(0, i).join('-'));
  out.push(localeKey(defaultLocale));
  return [...new Set(out.filter(Boolean))];
}

/** Turns a Handlebars runtime error into a message that points at the template text. */
function describeRenderError(err: unknown, source: string, lineOffset: number): string {
  const e = err as { message?: string; lineNumber?: number; column?: number };
  const msg = e.message ?? String(err);
  const m = /^"([^"]+)" not defined in .* - (\d+):(\d+)$/.exec(msg);
  if (m) {
    const line = Number(m[2]);
    const col = Number(m[3]);
    const text = source.split('\n')[line - 1] ?? '';
    const start = text.lastIndexOf('{{', col + 2);
    const end = text.indexOf('}}', col);
    const snippet = start >= 0 && end > start ? text.slice(start, end + 2) : `"${m[1]}"`;
    if (lineOffset === 0) return `missing variable "${m[1]}" in ${snippet}`;
    return `line ${line + lineOffset - 1}: missing variable "${m[1]}" in ${snippet}`;
  }
  if (/Cannot read properties of (undefined|null)/.test(msg)) {
    return `missing variable: ${msg.replace(/^Cannot read properties of (undefined|null) \(reading '([^']+)'\)$/, 'an object holding "$2" is not in the data')}`;
  }
  return msg.replace(/\n/g, ' ');
}

export function createTemplateRenderer(
  options: TemplateRendererOptions,
  logger: Logger,
): TemplateRenderer {
  const strict = options.strict ?? true;
  const defaultLocale = options.defaultLocale ?? 'en';
  const defaultTimezone = options.defaultTimezone ?? 'UTC';
  const log = logger.child({ component: 'templates' });
  const hb = Handlebars.create();
  registerHelpers(hb);

  let set: LoadedSet = {
    templates: new Map(),
    layouts: new Map(),
    partials: new Map(),
    errors: [],
  };
  let isTemplateLink: (url: string) => boolean = () => false;

  /** Every file's written links, the kept last good versions of broken files included. */
  function allWrittenLinks(loaded: LoadedSet): WrittenLinks[] {
    const out: WrittenLinks[] = [];
    for (const tpl of loaded.templates.values())
      for (const byLocale of tpl.parts.values()) for (const part of byLocale.values()) out.push(part.links);
    for (const byKind of loaded.layouts.values())
      for (const byLocale of byKind.values()) for (const l of byLocale.values()) out.push(l.links);
    for (const p of loaded.partials.values()) out.push(p.links);
    return out;
  }

  function load(): void {
    const next = loadTemplates(hb, options.dir, { strict });
    // Keep the last good version of files that broke since the previous load.
    const broken = new Set(next.errors.map((e) => e.file));
    for (const [name, prev] of set.templates) {
      for (const [kind, byLocale] of prev.parts) {
        for (const [loc, part] of byLocale) {
          if (!broken.has(part.file)) continue;
          const tpl = next.templates.get(name);
          if (!tpl) continue;
          const target = tpl.parts.get(kind) ?? new Map<string, Part>();
          tpl.parts.set(kind, target);
          if (!target.has(loc)) {
            target.set(loc, part);
            log.warn(
              { file: part.file },
              'template file does not parse; keeping its last good version',
            );
          }
        }
      }
    }
    for (const name of Object.keys(hb.partials)) hb.unregisterPartial(name);
    for (const [name, p] of next.partials) hb.registerPartial(name, p.source);
    set = next;
    isTemplateLink = linkMatcher(allWrittenLinks(next));
    if (next.errors.length > 0)
      log.warn(
        { errors: next.errors.length, dir: options.dir },
        'templates folder has errors; run `lifecycle templates validate`',
      );
    log.info({ templates: next.templates.size, dir: options.dir }, 'templates loaded');
  }

  function fail(
    template: string,
    channel: Channel,
    locale: string,
    reason: string,
    message: string,
    file?: string,
    cause?: unknown,
  ): never {
    throw new LifecycleError(ErrorCodes.Template, message, {
      retriable: false,
      status: 422,
      cause,
      details: { template, channel, locale, reason, ...(file ? { file } : {}) },
    });
  }

  function resolve(tpl: LoadedTemplate, kind: PartKind, locale: string): Part | undefined {
    const byLocale = tpl.parts.get(kind);
    if (!byLocale) return undefined;
    for (const key of localeChain(locale, defaultLocale)) {
      const p = byLocale.get(key);
      if (p) return p;
    }
    return undefined;
  }

  function layoutFor(name: string, kind: 'html' | 'txt', locale: string) {
    const byLocale = set.layouts.get(name)?.get(kind);
    if (!byLocale) return undefined;
    for (const key of [...localeChain(locale, defaultLocale), '']) {
      const l = byLocale.get(key);
      if (l) return l;
    }
    return undefined;
  }

  function renderPart(
    part: Part,
    data: Record<string, unknown>,
    frame: Record<string, unknown>,
    template: string,
    channel: Channel,
    locale: string,
  ): RenderedContent {
    const rt = { ...RUNTIME, data: frame };
    const run = (
      fn: Handlebars.TemplateDelegate,
      ctx: unknown,
      source: string,
      lineOffset: number,
      file: string,
      what: string,
    ): string => {
      try {
        return fn(ctx, rt);
      } catch (err) {
        return fail(
          template,
          channel,
          locale,
          'render',
          `${file}: ${what}: ${describeRenderError(err, source, lineOffset)}`,
          file,
          err,
        );
      }
    };
    const field = (key: string) => {
      const fn = part.fields[key];
      return fn
        ? run(fn, data, part.fieldSources[key] ?? '', 0, part.file, key)
            .replace(/\s*[\r\n]+\s*/g, ' ')
            .trim()
        : undefined;
    };
    const body = run(part.body, data, part.source, part.bodyLine, part.file, 'body');

    if (part.kind === 'email') {
      const subject = field('subject') ?? '';
      const preheader = field('preheader');
      const layoutName =
        part.layout === undefined ? (set.layouts.has('default') ? 'default' : null) : part.layout;
      let html = body;
      let layoutLocale = locale;
      if (layoutName) {
        const layout = layoutFor(layoutName, 'html', part.locale);
        if (!layout)
          fail(
            template,
            channel,
            locale,
            'layout',
            `${part.file}: unknown layout "${layoutName}"`,
            part.file,
          );
        layoutLocale = part.locale;
        html = run(
          layout.body,
          { ...data, subject, preheader: preheader ?? '', body },
          layout.source,
          1,
          layout.file,
          'layout',
        );
      }
      let text: string;
      const tpl = set.templates.get(template);
      const textPart = tpl?.parts.get('email.txt')?.get(localeKey(part.locale));
      if (textPart) {
        const textBody = run(
          textPart.body,
          data,
          textPart.source,
          textPart.bodyLine,
          textPart.file,
          'body',
        );
        const tLayoutName = textPart.layout === undefined ? layoutName : textPart.layout;
        const tLayout = tLayoutName ? layoutFor(tLayoutName, 'txt', layoutLocale) : undefined;
        text = tLayout
          ? run(
              tLayout.body,
              { ...data, subject, body: textBody },
              tLayout.source,
              1,
              tLayout.file,
              'layout',
            )
          : textBody;
      } else {
        text = htmlToText(html);
      }
      if (subject === '')
        fail(template, channel, locale, 'render', `${part.file}: subject renders empty`, part.file);
      return { subject, html, text };
    }
    if (part.kind === 'sms') return { body: body.trim() };
    const out: RenderedContent = { title: field('title') ?? '', body: body.trim() };
    const url = field('url');
    if (url) out.url = url;
    return out;
  }

  function frameFor(data: Record<string, unknown>, locale: string): Record<string, unknown> {
    const user = (data.user ?? {}) as Record<string, unknown>;
    const tz = typeof user.timezone === 'string' && user.timezone ? user.timezone : defaultTimezone;
    return { locale: locale || defaultLocale, timezone: tz };
  }

  function render(
    template: string,
    channel: Channel,
    locale: string,
    data: Record<string, unknown>,
  ): RenderedContent {
    const tpl = set.templates.get(template);
    if (!tpl)
      return fail(
        template,
        channel,
        locale,
        'not_found',
        `template "${template}" not found in ${options.dir}`,
      );
    const frame = frameFor(data, locale);
    if (channel === 'webhook') {
      // Webhooks carry the personalisation data; the in-app text comes along when there is one.
      const inapp = resolve(tpl, 'inapp', locale);
      const base = inapp ? renderPart(inapp, data, frame, template, channel, locale) : {};
      return { ...base, data: { template, locale: frame.locale, ...data } };
    }
    const part = resolve(tpl, CHANNEL_PART[channel], locale);
    if (!part)
      return fail(
        template,
        channel,
        locale,
        'no_channel',
        `template "${template}" has no ${channel} content for locale "${locale}" or "${defaultLocale}"`,
      );
    return renderPart(part, data, frame, template, channel, locale);
  }

  function channels(template: string): Channel[] {
    const tpl = set.templates.get(template);
    if (!tpl) return [];
    const out: Channel[] = [];
    for (const [channel, kind] of Object.entries(CHANNEL_PART) as [Channel, PartKind][])
      if (tpl.parts.has(kind)) out.push(channel);
    out.push('webhook');
    return out;
  }

  function validate(): TemplateError[] {
    const errors: TemplateError[] = [...set.errors];
    const knownPartials = new Set(Object.keys(hb.partials));
    const checkPartials = (file: string, names: string[]) => {
      for (const n of names)
        if (!knownPartials.has(n))
          errors.push({ file, message: `unknown partial "${n}" (add partials/${n}.hbs)` });
    };
    for (const p of set.partials.values()) checkPartials(p.file, p.partials);
    for (const byKind of set.layouts.values())
      for (const byLocale of byKind.values())
        for (const l of byLocale.values()) checkPartials(l.file, l.partials);

    for (const tpl of set.templates.values()) {
      if (tpl.parts.size === 0) {
        errors.push({
          file: tpl.dir,
          message: 'template has no content files (e.g. email.en.hbs)',
        });
        continue;
      }
      if (!tpl.sample && !errors.some((e) => e.file === tpl.sampleFile)) {
        errors.push({
          file: tpl.sampleFile,
          message:
            'missing sample data: add sample.json with the data the template uses (user, event, rule)',
        });
      }
      for (const [kind, byLocale] of tpl.parts) {
        if (kind !== 'email.txt' && !byLocale.has(localeKey(defaultLocale))) {
          const any = [...byLocale.values()][0]!;
          errors.push({
            file: any.file,
            message: `no ${kind}.${defaultLocale}.hbs: users whose locale has no file would get nothing`,
          });
        }
        for (const part of byLocale.values()) {
          checkPartials(part.file, part.partials);
          if (
            part.layout &&
            !set.layouts.get(part.layout)?.has(part.kind === 'email' ? 'html' : 'txt') &&
            part.kind === 'email'
          ) {
            errors.push({
              file: part.file,
              message: `unknown layout "${part.layout}" (add layouts/${part.layout}.hbs)`,
            });
            continue;
          }
          if (!tpl.sample) continue;
          const data = { links: SAMPLE_LINKS, ...tpl.sample };
          try {
            if (part.kind === 'email.txt') {
              const html = resolve(tpl, 'email', part.locale);
              if (!html || localeKey(html.locale) !== localeKey(part.locale)) {
                errors.push({
                  file: part.file,
                  message: `a text part needs the HTML part email.${part.locale}.hbs beside it`,
                });
                continue;
              }
            }
            const channel: Channel = part.kind === 'email.txt' ? 'email' : (part.kind as Channel);
            renderPart(
              part.kind === 'email.txt' ? resolve(tpl, 'email', part.locale)! : part,
              data,
              frameFor(data, part.locale),
              tpl.name,
              channel,
              part.locale,
            );
          } catch (err) {
            const details = err instanceof LifecycleError ? err.details : undefined;
            const file = typeof details?.file === 'string' ? details.file : part.file;
            const prefix = `${file}: `;
            const message = (err as Error).message;
            errors.push({
              file,
              message: message.startsWith(prefix) ? message.slice(prefix.length) : message,
            });
          }
        }
      }
    }
    const seen = new Set<string>();
    return errors.filter((e) => {
      const k = `${e.file}\u0000${e.message}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
  }

  load();

  let watcher: FSWatcher | undefined;
  let pending: NodeJS.Timeout | undefined;
  if (options.watch) {
    try {
      watcher = watchFs(options.dir, { recursive: true, persistent: false }, () => {
        // Editors write in bursts (temp file, rename, chmod): reload once it settles.
        clearTimeout(pending);
        pending = setTimeout(() => {
          try {
            load();
          } catch (err) {
            log.error(
              { err: (err as Error).message },
              'template reload failed; keeping the loaded templates',
            );
          }
        }, 150);
      });
      watcher.on('error', (err) =>
        log.warn({ err: err.message }, 'template folder watch failed; changes need a reload'),
      );
    } catch (err) {
      log.warn(
        { err: (err as Error).message, dir: options.dir },
        'cannot watch the templates folder; changes need a reload',
      );
    }
  }

  return {
    render,
    has: (template) => set.templates.has(template),
    isTemplateLink: (url) => isTemplateLink(url),
    names: () => [...set.templates.keys()].sort(),
    channels,
    validate,
    reload: load,
    close() {
      clearTimeout(pending);
      watcher?.close();
    },
  };
}
