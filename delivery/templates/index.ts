// Templates: renders the content managers' handlebars files per channel and locale (with
// fallback user locale -> language -> default), in strict mode, and validates them. With a
// store (./store.ts) it renders managed versions: the one published for the channel and
// locale, or the one a send pins; layouts and partials always come from the folder.
import { watch as watchFs, type FSWatcher } from 'node:fs';
import Handlebars from 'handlebars';
import type { Logger } from 'pino';
import type { Channel } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import type { RenderedContent } from '../provider.ts';
import { registerHelpers } from './helpers.ts';
import { htmlToText } from './html-to-text.ts';
import { linkMatcher, type WrittenLinks } from './written-links.ts';
import type { TemplateStore } from './store.ts';
import { unprovidedVariables } from './variables.ts';
import { publishedVersion } from './versions.ts';
import {
  loadTemplateFiles,
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
export { localeChain } from './locale.ts';
import { localeChain } from './locale.ts';

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
  /**
   * Managed templates: render the versions of this store (the published one, or the one a send
   * pins) instead of the folder's template files; layouts and partials still come from `dir`.
   */
  store?: TemplateStore;
  /** Called after the folder was read again on a change (`watch`): the managed store seeds it. */
  onReload?: () => void;
}

/** The outcome of checking one template version: errors refuse it, warnings are shown. */
export interface VersionCheck {
  errors: TemplateError[];
  warnings: TemplateError[];
}

export interface TemplateRenderer {
  /** Throws LifecycleError(LC_ERR_TEMPLATE) for a missing template/channel or a missing variable. */
  render(
    template: string,
    channel: Channel,
    locale: string,
    data: Record<string, unknown>,
    version?: number,
  ): RenderedContent;
  /**
   * The version a send of (template, channel, locale) renders: `pinned` when given, else the
   * published one; null for a template read from the folder (no versions). Throws
   * LifecycleError(LC_ERR_TEMPLATE) when the template has no such or no published version.
   */
  versionFor(template: string, channel: Channel, locale: string, pinned?: number): number | null;
  /** render() of the version versionFor() names, with that version. */
  renderVersion(
    template: string,
    channel: Channel,
    locale: string,
    data: Record<string, unknown>,
    pinned?: number,
  ): { content: RenderedContent; version: number | null };
  /**
   * Checks a template's files as a version would be saved: what validate() checks, and (unless
   * `variables` is false) every variable nothing provides.
   */
  checkFiles(
    name: string,
    files: Readonly<Record<string, string>>,
    opts?: { variables?: boolean },
  ): VersionCheck;
  /**
   * Renders files not saved as a version (an editor's draft) as a version of them would render:
   * the same layouts, partials and helpers. Throws LifecycleError(LC_ERR_TEMPLATE) for a file
   * that does not compile, with the problems of `checkFiles` in its details, or as render() does.
   */
  renderFiles(
    name: string,
    files: Readonly<Record<string, string>>,
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
  /**
   * Every problem in the folder (managed: in layouts, partials and each template's latest
   * version), each as `file: message`; renders each file against its sample data.
   */
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

function dedupe(errors: TemplateError[]): TemplateError[] {
  const seen = new Set<string>();
  return errors.filter((e) => {
    const k = `${e.file}\u0000${e.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
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
  const store = options.store;
  /** Managed versions compiled so far (`name@version`); versions never change, so neither do these. */
  const compiled = new Map<string, { tpl: LoadedTemplate; errors: TemplateError[] }>();

  function compiledEntry(
    name: string,
    version: number,
  ): { tpl: LoadedTemplate; errors: TemplateError[] } | undefined {
    const key = `${name}@${version}`;
    const hit = compiled.get(key);
    if (hit) return hit;
    const v = store?.version(name, version);
    if (!v) return undefined;
    const errors: TemplateError[] = [];
    const tpl = loadTemplateFiles(hb, name, `${name}@v${version}`, v.files, { strict }, errors);
    if (errors.length > 0)
      log.warn({ template: name, version, errors }, 'a stored template version has broken files');
    const entry = { tpl, errors };
    compiled.set(key, entry);
    // Its links are written links from now on (tracked when it renders).
    isTemplateLink = linkMatcher(allWrittenLinks(set));
    return entry;
  }

  const compiledVersion = (name: string, version: number) => compiledEntry(name, version)?.tpl;

  /** Every file's written links, the kept last good versions of broken files included. */
  function allWrittenLinks(loaded: LoadedSet): WrittenLinks[] {
    const out: WrittenLinks[] = [];
    const templates = [...loaded.templates.values(), ...[...compiled.values()].map((c) => c.tpl)];
    for (const tpl of templates)
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
    tpl: LoadedTemplate,
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
      const textPart = tpl.parts.get('email.txt')?.get(localeKey(part.locale));
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

  function versionFor(
    template: string,
    channel: Channel,
    locale: string,
    pinned?: number,
  ): number | null {
    if (!store) {
      if (pinned !== undefined)
        fail(
          template,
          channel,
          locale,
          'no_version',
          `template "${template}" is read from ${options.dir}, which keeps no versions: version ${pinned} cannot be rendered here`,
        );
      return null;
    }
    if (!store.latest(template))
      fail(
        template,
        channel,
        locale,
        'not_found',
        `template "${template}" not found in the templates store`,
      );
    if (pinned !== undefined) {
      if (!store.version(template, pinned))
        fail(
          template,
          channel,
          locale,
          'no_version',
          `template "${template}" has no version ${pinned}`,
        );
      return pinned;
    }
    const v = publishedVersion(store.publication(template), channel, locale, defaultLocale);
    if (v === undefined)
      fail(
        template,
        channel,
        locale,
        'not_published',
        `template "${template}" has no version published for ${channel} (locale "${locale || defaultLocale}"): publish one first (POST /v1/templates/${template}/publish)`,
      );
    return v;
  }

  function templateOf(
    template: string,
    channel: Channel,
    locale: string,
    version: number | null,
  ): LoadedTemplate {
    const tpl = version === null ? set.templates.get(template) : compiledVersion(template, version);
    if (!tpl)
      fail(
        template,
        channel,
        locale,
        'not_found',
        version === null
          ? `template "${template}" not found in ${options.dir}`
          : `template "${template}" has no version ${version}`,
      );
    return tpl;
  }

  function renderTemplate(
    tpl: LoadedTemplate,
    channel: Channel,
    locale: string,
    data: Record<string, unknown>,
  ): RenderedContent {
    const template = tpl.name;
    const frame = frameFor(data, locale);
    if (channel === 'webhook') {
      // Webhooks carry the personalisation data; the in-app text comes along when there is one.
      const inapp = resolve(tpl, 'inapp', locale);
      const base = inapp ? renderPart(inapp, data, frame, template, channel, locale, tpl) : {};
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
    return renderPart(part, data, frame, template, channel, locale, tpl);
  }

  function renderVersion(
    template: string,
    channel: Channel,
    locale: string,
    data: Record<string, unknown>,
    pinned?: number,
  ): { content: RenderedContent; version: number | null } {
    const version = versionFor(template, channel, locale, pinned);
    const tpl = templateOf(template, channel, locale, version);
    return { content: renderTemplate(tpl, channel, locale, data), version };
  }

  function channelsOf(tpl: LoadedTemplate | undefined): Channel[] {
    if (!tpl) return [];
    const out: Channel[] = [];
    for (const [channel, kind] of Object.entries(CHANNEL_PART) as [Channel, PartKind][])
      if (tpl.parts.has(kind)) out.push(channel);
    out.push('webhook');
    return out;
  }

  /** The templates this renderer serves: the folder's, or each managed template's latest version. */
  function served(): { tpl: LoadedTemplate; errors: TemplateError[] }[] {
    if (!store)
      return [...set.templates.values()].map((tpl) => ({ tpl, errors: [] as TemplateError[] }));
    return store.names().flatMap((name) => {
      const latest = store.latest(name);
      const c = latest ? compiledEntry(name, latest.version) : undefined;
      return c ? [c] : [];
    });
  }

  /** Layouts' and partials' problems, and each template's (those of `templates`). */
  function check(
    templates: readonly { tpl: LoadedTemplate; errors: TemplateError[] }[],
    shared: boolean,
  ): TemplateError[] {
    const errors: TemplateError[] = templates.flatMap((t) => t.errors);
    const knownPartials = new Set(Object.keys(hb.partials));
    const checkPartials = (file: string, names: string[]) => {
      for (const n of names)
        if (!knownPartials.has(n))
          errors.push({ file, message: `unknown partial "${n}" (add partials/${n}.hbs)` });
    };
    if (shared) {
      const folderTemplates = new Set([...set.templates.values()].map((t) => t.dir));
      errors.push(
        ...set.errors.filter(
          (e) => !store || ![...folderTemplates].some((d) => e.file.startsWith(`${d}/`)),
        ),
      );
      for (const p of set.partials.values()) checkPartials(p.file, p.partials);
      for (const byKind of set.layouts.values())
        for (const byLocale of byKind.values())
          for (const l of byLocale.values()) checkPartials(l.file, l.partials);
    }

    for (const { tpl } of templates) {
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
              tpl,
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
    return dedupe(errors);
  }

  function checkFiles(
    name: string,
    files: Readonly<Record<string, string>>,
    opts: { variables?: boolean } = {},
  ): VersionCheck {
    const errors: TemplateError[] = [];
    const tpl = loadTemplateFiles(hb, name, name, files, { strict }, errors);
    const vars =
      opts.variables === false ? { errors: [], warnings: [] } : unprovidedVariables(hb, tpl);
    return {
      errors: dedupe([...check([{ tpl, errors }], false), ...vars.errors]),
      warnings: dedupe(vars.warnings),
    };
  }

  function renderFiles(
    name: string,
    files: Readonly<Record<string, string>>,
    channel: Channel,
    locale: string,
    data: Record<string, unknown>,
  ): RenderedContent {
    const errors: TemplateError[] = [];
    const tpl = loadTemplateFiles(hb, name, name, files, { strict }, errors);
    if (errors.length > 0)
      throw new LifecycleError(
        ErrorCodes.Template,
        `the draft of "${name}" does not compile: ${errors.map((e) => `${e.file}: ${e.message}`).join('; ')}`,
        { details: { template: name, problems: dedupe(errors) } },
      );
    return renderTemplate(tpl, channel, locale, data);
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
            options.onReload?.();
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
    render: (template, channel, locale, data, version) =>
      renderVersion(template, channel, locale, data, version).content,
    renderVersion,
    versionFor,
    checkFiles,
    renderFiles,
    has: (template) => (store ? store.latest(template) !== undefined : set.templates.has(template)),
    isTemplateLink: (url) => isTemplateLink(url),
    names: () => (store ? store.names() : [...set.templates.keys()].sort()),
    channels: (template) => {
      const latest = store?.latest(template);
      return channelsOf(
        store
          ? latest && compiledVersion(template, latest.version)
          : set.templates.get(template),
      );
    },
    validate: () => check(served(), true),
    reload: load,
    close() {
      clearTimeout(pending);
      watcher?.close();
    },
  };
}
