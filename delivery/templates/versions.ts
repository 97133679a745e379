// Managed templates as data: a version is the set of files of one template folder (its
// channel files and sample.json), immutable once saved, numbered 1, 2, 3... per template,
// with who saved it, why, when and a hash of its content. A publication says which version
// each channel and locale sends (`'*'`: every locale without one of its own), and keeps per
// entry the versions it replaced, so a rollback restores the one before. Records on the
// compacted templates topic are keyed so compaction never loses one: `v:<name>:<n>` per
// version (never written twice), `p:<name>` per publication (each write the whole map).
import { createHash } from 'node:crypto';
import type { Channel } from '../../platform/contracts.ts';
import { localeChain } from './locale.ts';
import { localeKey } from './loader.ts';

/** Author of the versions made from the templates folder (seeding): files win only when they change. */
export const FILES_AUTHOR = 'files:templates/';
export const isFilesAuthor = (author: string): boolean => author.startsWith('files:');

/** Every locale of a channel that has no entry of its own. */
export const ANY_LOCALE = '*';

export interface VersionInfo {
  name: string;
  version: number;
  /** The staff actor who saved it (`key_...`, `jwt:<sub>`, `admin-token`), or FILES_AUTHOR. */
  author: string;
  message: string;
  /** ISO time. */
  createdAt: string;
  /** `sha256:<hex>` over the file names and contents. */
  hash: string;
}

export interface TemplateVersion extends VersionInfo {
  /** File name -> text (`email.en.hbs`, `sample.json`, ...). */
  files: Record<string, string>;
}

/** channel -> locale key (`de`, `pt-br`) or ANY_LOCALE -> version. */
export type PublicationMap = Partial<Record<Channel, Record<string, number>>>;

export interface Publication {
  name: string;
  /** Increases by one with each change; a write is based on the revision its writer saw. */
  rev: number;
  channels: PublicationMap;
  /** Per entry, the versions it had before, oldest first (null: it had none, never rolled back to). */
  history: Partial<Record<Channel, Record<string, (number | null)[]>>>;
  updatedAt: string;
  updatedBy: string;
}

/** Versions an entry remembers for rollbacks. */
export const HISTORY_DEPTH = 20;

/** The content hash of a version's files: the same files give the same hash on every instance. */
export function contentHash(files: Readonly<Record<string, string>>): string {
  const h = createHash('sha256');
  for (const name of Object.keys(files).sort()) {
    const body = Buffer.from(files[name]!, 'utf8');
    h.update(`${name}\u0000${body.length}\u0000`);
    h.update(body);
  }
  return `sha256:${h.digest('hex')}`;
}

export const versionKey = (name: string, version: number): string => `v:${name}:${version}`;
export const publicationKey = (name: string): string => `p:${name}`;

export type RecordKey =
  | { kind: 'version'; name: string; version: number }
  | { kind: 'publication'; name: string };

/** What a templates-topic key names, or null for a key this version of the product does not know. */
export function parseRecordKey(key: string | null): RecordKey | null {
  if (key === null) return null;
  const v = /^v:([A-Za-z0-9_-]+):([1-9][0-9]{0,8})$/.exec(key);
  if (v) return { kind: 'version', name: v[1]!, version: Number(v[2]) };
  const p = /^p:([A-Za-z0-9_-]+)$/.exec(key);
  if (p) return { kind: 'publication', name: p[1]! };
  return null;
}

const CHANNEL_OF_FILE: Record<string, Exclude<Channel, 'webhook'>> = {
  email: 'email',
  inapp: 'inapp',
  push: 'push',
  sms: 'sms',
};

/** The channels a version has content for; webhook always (it carries the data). */
export function versionChannels(files: Readonly<Record<string, string>>): Channel[] {
  const out = new Set<Channel>();
  for (const f of Object.keys(files)) {
    const c = CHANNEL_OF_FILE[f.split('.')[0] ?? ''];
    if (c && f.endsWith('.hbs')) out.add(c);
  }
  return [...(['email', 'inapp', 'push', 'sms'] as const).filter((c) => out.has(c)), 'webhook'];
}

/**
 * The version published for a channel and a recipient's locale: the recipient's own locale and
 * its language (`de-at`, `de`), then every-locale (`*`), then the default locale's entry.
 * Within that version the files follow the usual fallback. Undefined: nothing published.
 */
export function publishedVersion(
  pub: Publication | undefined,
  channel: Channel,
  locale: string,
  defaultLocale: string,
): number | undefined {
  const byLocale = pub?.channels[channel];
  if (!byLocale) return undefined;
  const fallback = localeKey(defaultLocale);
  const chain = localeChain(locale, defaultLocale).filter((k) => k !== fallback);
  for (const key of [...chain, ANY_LOCALE, fallback]) {
    const v = byLocale[key];
    if (v !== undefined) return v;
  }
  return undefined;
}

export const emptyPublication = (name: string): Publication => ({
  name,
  rev: 0,
  channels: {},
  history: {},
  updatedAt: new Date(0).toISOString(),
  updatedBy: '',
});

/** A locale as publications key it: `*`, or the file-name form (`pt-BR` -> `pt-br`). */
export const publicationLocale = (locale: string): string =>
  locale === ANY_LOCALE ? ANY_LOCALE : localeKey(locale);

/** One entry that a publish or rollback changed. */
export interface EntryChange {
  channel: Channel;
  locale: string;
  from: number | null;
  to: number | null;
}

/** `pub` with `version` published for each channel and locale (`*` when none named); entries that already had it are left alone. */
export function applyPublish(
  pub: Publication,
  version: number,
  channels: readonly Channel[],
  locales: readonly string[],
  by: string,
  at: string,
): { next: Publication; changes: EntryChange[] } {
  const next: Publication = structuredClone(pub);
  const changes: EntryChange[] = [];
  for (const channel of channels) {
    for (const locale of locales.map(publicationLocale)) {
      const byLocale = (next.channels[channel] ??= {});
      const from = byLocale[locale] ?? null;
      if (from === version) continue;
      byLocale[locale] = version;
      const hist = ((next.history[channel] ??= {})[locale] ??= []);
      hist.push(from);
      if (hist.length > HISTORY_DEPTH) hist.splice(0, hist.length - HISTORY_DEPTH);
      changes.push({ channel, locale, from, to: version });
    }
  }
  if (changes.length > 0) Object.assign(next, { rev: pub.rev + 1, updatedAt: at, updatedBy: by });
  return { next, changes };
}

/**
 * `pub` with each named entry back at the version it had before its last change. Entries
 * without an earlier version are not changed and are listed in `missing`.
 */
export function applyRollback(
  pub: Publication,
  channels: readonly Channel[],
  locales: readonly string[],
  by: string,
  at: string,
): { next: Publication; changes: EntryChange[]; missing: { channel: Channel; locale: string }[] } {
  const next: Publication = structuredClone(pub);
  const changes: EntryChange[] = [];
  const missing: { channel: Channel; locale: string }[] = [];
  for (const channel of channels) {
    for (const locale of locales.map(publicationLocale)) {
      const hist = next.history[channel]?.[locale];
      const byLocale = next.channels[channel];
      const from = byLocale?.[locale] ?? null;
      const to = hist?.[hist.length - 1] ?? null;
      // A rollback never unpublishes: sends of an entry without a version would fail.
      if (!hist || !byLocale || from === null || to === null) {
        missing.push({ channel, locale });
        continue;
      }
      hist.pop();
      byLocale[locale] = to;
      changes.push({ channel, locale, from, to });
    }
  }
  if (changes.length > 0) Object.assign(next, { rev: pub.rev + 1, updatedAt: at, updatedBy: by });
  return { next, changes, missing };
}
