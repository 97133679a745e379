// Reads the templates folder (the content managers' room) into parsed, compiled parts.
// Layout on disk (see templates/README.md):
//   <dir>/<name>/email.<locale>.hbs        front matter (subject, preheader, layout) + HTML body
//   <dir>/<name>/email.<locale>.txt.hbs    optional plain-text part
//   <dir>/<name>/inapp.<locale>.hbs        front matter (title, url) + text body
//   <dir>/<name>/push.<locale>.hbs         front matter (title, url) + text body
//   <dir>/<name>/sms.<locale>.hbs          text body
//   <dir>/<name>/sample.json               data the template is validated and previewed with
//   <dir>/layouts/<layout>[.txt][.<locale>].hbs, <dir>/partials/<partial>.hbs
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TemplateDelegate } from 'handlebars';
import { writtenLinks, type WrittenLinks } from './written-links.ts';

type Handlebars = typeof import('handlebars');
type Program = ReturnType<Handlebars['parse']>;

/** What a template file renders: the HTML/text body of an email, or the text of the other channels. */
export type PartKind = 'email' | 'email.txt' | 'inapp' | 'push' | 'sms';

export interface TemplateError {
  /** Path of the offending file (the folder joined with its relative path). */
  file: string;
  message: string;
}

export interface Part {
  file: string;
  kind: PartKind;
  /** As written in the file name (`de`, `pt-BR`). */
  locale: string;
  /** Front-matter fields that are themselves templates (subject, preheader, title, url). */
  fields: Record<string, TemplateDelegate>;
  /** Source text of each field, for error messages. */
  fieldSources: Record<string, string>;
  body: TemplateDelegate;
  /** Front matter `layout:`; undefined = the default layout if there is one, null = none. */
  layout: string | null | undefined;
  /** 1-based line of the body's first line in the file (after the front matter). */
  bodyLine: number;
  source: string;
  partials: string[];
  /** Links written in the file (body and fields), the ones that may be tracked. */
  links: WrittenLinks;
}

export interface LoadedTemplate {
  name: string;
  dir: string;
  parts: Map<PartKind, Map<string, Part>>;
  sample: Record<string, unknown> | undefined;
  sampleFile: string;
}

export interface LayoutPart {
  file: string;
  body: TemplateDelegate;
  source: string;
  partials: string[];
  links: WrittenLinks;
}

export interface LoadedSet {
  templates: Map<string, LoadedTemplate>;
  /** layout name -> "html"|"txt" -> locale key ('' = any locale) -> part */
  layouts: Map<string, Map<'html' | 'txt', Map<string, LayoutPart>>>;
  partials: Map<string, { file: string; source: string; partials: string[]; links: WrittenLinks }>;
  errors: TemplateError[];
}

const LOCALE = '[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*';
const PART_FILE = new RegExp(`^(email|inapp|push|sms)\\.(${LOCALE})(\\.txt)?\\.hbs$`);
const LAYOUT_FILE = new RegExp(`^([A-Za-z0-9_-]+)(\\.txt)?(?:\\.(${LOCALE}))?\\.hbs$`);
const PARTIAL_FILE = /^([A-Za-z0-9_-]+)\.hbs$/;
const NAME = /^[A-Za-z0-9_-]+$/;
const RESERVED = new Set(['layouts', 'partials']);
const IGNORED = /^(\.|README|readme)/;

/** Front-matter keys each kind of file accepts; `true` = required. */
const FIELDS: Record<PartKind, Record<string, boolean>> = {
  email: { subject: true, preheader: false, layout: false },
  'email.txt': { layout: false },
  inapp: { title: true, url: false },
  push: { title: true, url: false },
  sms: {},
};
/** Fields that are not templates themselves. */
const PLAIN_FIELDS = new Set(['layout']);

export const localeKey = (locale: string): string => locale.replace(/_/g, '-').toLowerCase();

export interface CompileFlags {
  strict: boolean;
}

export const KNOWN_HELPERS = {
  formatDate: true,
  formatCurrency: true,
  default: true,
  eq: true,
} as const;

function compileOptions(flags: CompileFlags, escape: boolean) {
  return {
    strict: flags.strict,
    noEscape: !escape,
    knownHelpers: KNOWN_HELPERS,
    knownHelpersOnly: true,
  };
}

/** Partial names referenced by a template (`{{> name}}`, `{{#> name}}`); dynamic partials are skipped. */
export function partialReferences(ast: Program): string[] {
  const out = new Set<string>();
  const visit = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const n of node) visit(n);
      return;
    }
    const n = node as { type?: string; name?: { type?: string; original?: unknown } };
    if (
      (n.type === 'PartialStatement' || n.type === 'PartialBlockStatement') &&
      n.name?.type === 'PathExpression' &&
      typeof n.name.original === 'string'
    ) {
      out.add(n.name.original);
    }
    for (const [k, v] of Object.entries(node))
      if (k !== 'loc' && v && typeof v === 'object') visit(v);
  };
  visit(ast);
  return [...out];
}

/**
 * Splits `---\n<fields>\n---\n<body>`. Fields are `name: text` lines, taken verbatim (no
 * quoting rules to learn: `subject: {{user.firstName}}, "hi"` works); a value wrapped whole
 * in matching quotes loses them; `#` lines are comments. Files without front matter are all body.
 */
export function splitFrontMatter(src: string): {
  meta: Record<string, string>;
  body: string;
  bodyLine: number;
} {
  const text = src.replace(/^\uFEFF/, '');
  const m = /^---[ \t]*\r?\n([\s\S]*?)\r?\n?---[ \t]*(?:\r?\n|$)/.exec(text);
  if (!m) return { meta: {}, body: text, bodyLine: 1 };
  const meta: Record<string, string> = {};
  const lines = m[1]!.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line.trim() === '' || line.trim().startsWith('#')) return;
    const kv = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s*:(.*)$/.exec(line);
    if (!kv)
      throw new Error(`line ${i + 2}: expected \`field: text\`, got "${line.trim().slice(0, 60)}"`);
    let value = kv[2]!.trim();
    if (
      value.length >= 2 &&
      (value[0] === '"' || value[0] === "'") &&
      value[value.length - 1] === value[0]
    )
      value = value.slice(1, -1);
    if (kv[1]! in meta) throw new Error(`line ${i + 2}: field "${kv[1]}" appears twice`);
    meta[kv[1]!] = value;
  });
  const bodyLine = m[0].split('\n').length + (m[0].endsWith('\n') ? 0 : 1);
  return { meta, body: text.slice(m[0].length), bodyLine };
}

function syntaxMessage(err: unknown, lineOffset: number): string {
  const msg = err instanceof Error ? err.message : String(err);
  // Handlebars parse errors start with "Parse error on line N:"; shift N past the front matter.
  return msg
    .replace(
      /^Parse error on line (\d+):/,
      (_m, n: string) => `syntax error on line ${Number(n) + lineOffset - 1}:`,
    )
    .replace(/\n/g, ' ');
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Parses and precompiles (to surface unknown helpers) one template source; throws a readable message. */
function compile(
  hb: Handlebars,
  source: string,
  flags: CompileFlags,
  escape: boolean,
  lineOffset: number,
): { fn: TemplateDelegate; partials: string[]; links: WrittenLinks } {
  let ast: Program;
  try {
    ast = hb.parse(source);
  } catch (err) {
    throw new Error(syntaxMessage(err, lineOffset));
  }
  const opts = compileOptions(flags, escape);
  try {
    hb.precompile(ast, opts);
  } catch (err) {
    throw new Error(syntaxMessage(err, lineOffset));
  }
  return { fn: hb.compile(ast, opts), partials: partialReferences(ast), links: writtenLinks(ast) };
}

export function loadTemplates(hb: Handlebars, dir: string, flags: CompileFlags): LoadedSet {
  const errors: TemplateError[] = [];
  const set: LoadedSet = { templates: new Map(), layouts: new Map(), partials: new Map(), errors };
  if (!isDir(dir)) {
    errors.push({ file: dir, message: 'templates folder not found' });
    return set;
  }

  for (const f of listDir(join(dir, 'partials'))) {
    const file = join(dir, 'partials', f);
    const m = PARTIAL_FILE.exec(f);
    if (!m) {
      if (!IGNORED.test(f)) errors.push({ file, message: 'partial file names are `<name>.hbs`' });
      continue;
    }
    try {
      const source = readFileSync(file, 'utf8');
      const { partials, links } = compile(hb, source, flags, true, 1);
      set.partials.set(m[1]!, { file, source, partials, links });
    } catch (err) {
      errors.push({ file, message: (err as Error).message });
    }
  }

  for (const f of listDir(join(dir, 'layouts'))) {
    const file = join(dir, 'layouts', f);
    const m = LAYOUT_FILE.exec(f);
    if (!m) {
      if (!IGNORED.test(f))
        errors.push({ file, message: 'layout file names are `<name>[.txt][.<locale>].hbs`' });
      continue;
    }
    const [, name, txt, locale] = m;
    const kind = txt ? 'txt' : 'html';
    try {
      const source = readFileSync(file, 'utf8');
      const { fn, partials, links } = compile(hb, source, flags, kind === 'html', 1);
      const byKind = set.layouts.get(name!) ?? new Map<'html' | 'txt', Map<string, LayoutPart>>();
      set.layouts.set(name!, byKind);
      const byLocale = byKind.get(kind) ?? new Map<string, LayoutPart>();
      byKind.set(kind, byLocale);
      byLocale.set(locale ? localeKey(locale) : '', { file, body: fn, source, partials, links });
    } catch (err) {
      errors.push({ file, message: (err as Error).message });
    }
  }

  for (const name of templateFolders(dir, errors)) {
    const tdir = join(dir, name);
    set.templates.set(name, loadTemplateFiles(hb, name, tdir, readTemplateFolder(tdir), flags, errors));
  }
  return set;
}

/** Names of the template folders in `dir` (not layouts/ and partials/); a badly named folder is reported. */
export function templateFolders(dir: string, errors: TemplateError[] = []): string[] {
  const out: string[] = [];
  for (const name of listDir(dir)) {
    const tdir = join(dir, name);
    if (RESERVED.has(name) || IGNORED.test(name) || !isDir(tdir)) continue;
    if (!NAME.test(name)) {
      errors.push({ file: tdir, message: 'template names use letters, digits, `_` and `-` only' });
      continue;
    }
    out.push(name);
  }
  return out;
}

/**
 * The files of one template folder, name -> text: what a managed version holds. Hidden files
 * and READMEs are not part of a template; sub-folders are not read.
 */
export function readTemplateFolder(tdir: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const f of listDir(tdir)) {
    if (IGNORED.test(f)) continue;
    const file = join(tdir, f);
    try {
      if (!statSync(file).isFile()) continue;
      files[f] = readFileSync(file, 'utf8');
    } catch {
      // Gone between the listing and the read (an editor's rename): the next load sees it.
    }
  }
  return files;
}

/** Whether a name may be a template's (a folder name, a managed template's name). */
export const isTemplateName = (name: string): boolean => NAME.test(name) && !RESERVED.has(name);

/** Whether a file name may be in a template (what a folder may hold; validation says more). */
export const isTemplateFileName = (f: string): boolean =>
  /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(f) && !IGNORED.test(f);

/**
 * Parses one template from its files (a folder's, or a managed version's). `dir` labels the
 * files in errors (`<dir>/email.en.hbs`).
 */
export function loadTemplateFiles(
  hb: Handlebars,
  name: string,
  dir: string,
  files: Readonly<Record<string, string>>,
  flags: CompileFlags,
  errors: TemplateError[],
): LoadedTemplate {
  const tpl: LoadedTemplate = {
    name,
    dir,
    parts: new Map(),
    sample: undefined,
    sampleFile: join(dir, 'sample.json'),
  };
  for (const f of Object.keys(files).sort()) {
    const file = join(dir, f);
    const source = files[f]!;
    if (f === 'sample.json') {
      try {
        const parsed: unknown = JSON.parse(source);
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
          throw new Error('sample data must be a JSON object');
        tpl.sample = parsed as Record<string, unknown>;
      } catch (err) {
        errors.push({ file, message: `invalid sample data: ${(err as Error).message}` });
      }
      continue;
    }
    if (IGNORED.test(f)) continue;
    const m = PART_FILE.exec(f);
    if (!m) {
      errors.push({
        file,
        message:
          'unknown file: expected <channel>.<locale>.hbs (channel: email, inapp, push, sms), email.<locale>.txt.hbs or sample.json',
      });
      continue;
    }
    const kind = (m[3] ? `${m[1]}.txt` : m[1]) as PartKind;
    if (m[3] && m[1] !== 'email') {
      errors.push({ file, message: 'only email has a separate .txt part' });
      continue;
    }
    const part = loadPart(hb, file, source, kind, m[2]!, flags, errors);
    if (!part) continue;
    const byLocale = tpl.parts.get(kind) ?? new Map<string, Part>();
    tpl.parts.set(kind, byLocale);
    byLocale.set(localeKey(part.locale), part);
  }
  return tpl;
}

function loadPart(
  hb: Handlebars,
  file: string,
  src: string,
  kind: PartKind,
  locale: string,
  flags: CompileFlags,
  errors: TemplateError[],
): Part | null {
  let fm: ReturnType<typeof splitFrontMatter>;
  try {
    fm = splitFrontMatter(src);
  } catch (err) {
    errors.push({ file, message: `front matter: ${(err as Error).message.replace(/\n/g, ' ')}` });
    return null;
  }
  const allowed = FIELDS[kind];
  let ok = true;
  for (const key of Object.keys(fm.meta)) {
    if (!(key in allowed)) {
      const names = Object.keys(allowed);
      errors.push({
        file,
        message: `unknown front matter field "${key}" (${names.length ? `allowed: ${names.join(', ')}` : 'this file takes no front matter'})`,
      });
      ok = false;
    }
  }
  for (const [key, required] of Object.entries(allowed)) {
    const v = fm.meta[key];
    if (required && (v === undefined || v.trim() === '')) {
      errors.push({ file, message: `missing front matter field "${key}"` });
      ok = false;
    }
  }
  if (!ok) return null;
  const escape = kind === 'email';
  const fields: Record<string, TemplateDelegate> = {};
  const fieldSources: Record<string, string> = {};
  const partials = new Set<string>();
  const links: WrittenLinks = { exact: [], prefixes: [] };
  const addLinks = (l: WrittenLinks) => {
    links.exact.push(...l.exact);
    links.prefixes.push(...l.prefixes);
  };
  try {
    for (const [key, v] of Object.entries(fm.meta)) {
      if (PLAIN_FIELDS.has(key)) continue;
      // Subjects, titles and URLs are not HTML: escaping would show `&amp;` to the reader.
      const c = compile(hb, String(v), flags, false, 1);
      fields[key] = c.fn;
      fieldSources[key] = String(v);
      c.partials.forEach((p) => partials.add(p));
      addLinks(c.links);
    }
    const c = compile(hb, fm.body, flags, escape, fm.bodyLine);
    c.partials.forEach((p) => partials.add(p));
    addLinks(c.links);
    const layoutRaw = fm.meta.layout;
    const layout =
      layoutRaw === undefined
        ? undefined
        : String(layoutRaw).trim() === 'none'
          ? null
          : String(layoutRaw).trim();
    return {
      file,
      kind,
      locale,
      fields,
      fieldSources,
      body: c.fn,
      layout,
      bodyLine: fm.bodyLine,
      source: fm.body,
      partials: [...partials],
      links,
    };
  } catch (err) {
    errors.push({ file, message: (err as Error).message });
    return null;
  }
}
