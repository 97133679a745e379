// The links the content managers wrote into the templates, as opposed to links that come
// from the data a template is rendered with (a trait or event property in an `href`). Only
// written links become signed click URLs: a signed redirect to a URL taken from user data
// would be an open redirect carrying our signature.
//
// They are read from the parsed template, so a link counts wherever it is written: in the
// HTML or text of a body, layout or partial, or as a string given to a partial or helper
// (`{{> button url="https://app.example.com/start"}}`). A written URL that runs into an
// expression (`https://app.example.com/projects/{{id}}`) counts as a prefix, but only when
// the written part already ends the host (a `/`, `?` or `#` after it): what the data adds
// can then change the path or query, never where the link goes.
import { decodeEntities } from './html-to-text.ts';

type Program = ReturnType<(typeof import('handlebars'))['parse']>;

export interface WrittenLinks {
  /** URLs written whole. */
  exact: string[];
  /** Written beginnings of URLs that an expression completes; each fixes scheme and host. */
  prefixes: string[];
}

const URL_IN_TEXT = /https?:\/\/[^\s<>"'`]+/gi;
const WHOLE_URL = /^https?:\/\/\S+$/i;
/** Scheme and host, then the character that ends the host. */
const FIXES_HOST = /^https?:\/\/[^/?#\s@]+[/?#]/i;

/** The links written in one parsed template. */
export function writtenLinks(ast: Program): WrittenLinks {
  const exact = new Set<string>();
  const prefixes = new Set<string>();
  const visit = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const n of node) visit(n);
      return;
    }
    const n = node as { type?: string; value?: unknown };
    if (n.type === 'ContentStatement' && typeof n.value === 'string') {
      const text = n.value;
      for (const m of text.matchAll(URL_IN_TEXT)) {
        const url = decodeEntities(m[0]);
        // Text that ends with the URL is followed by an expression (or the template's end).
        if (m.index + m[0].length < text.length) exact.add(url);
        else if (FIXES_HOST.test(url)) prefixes.add(url);
      }
      return;
    }
    if (n.type === 'StringLiteral' && typeof n.value === 'string') {
      if (WHOLE_URL.test(n.value)) exact.add(n.value);
      return;
    }
    for (const [k, v] of Object.entries(node)) if (k !== 'loc' && v && typeof v === 'object') visit(v);
  };
  visit(ast);
  return { exact: [...exact], prefixes: [...prefixes] };
}

/** Whether a rendered link is one of the written links (or completes a written prefix). */
export function linkMatcher(sets: Iterable<WrittenLinks>): (url: string) => boolean {
  const exact = new Set<string>();
  const prefixes = new Set<string>();
  for (const s of sets) {
    for (const u of s.exact) exact.add(u);
    for (const p of s.prefixes) prefixes.add(p);
  }
  const starts = [...prefixes];
  return (url) => exact.has(url) || starts.some((p) => url.startsWith(p));
}
