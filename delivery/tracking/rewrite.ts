// Tracking applied to rendered email content: every http(s) link written in the templates
// becomes a signed click URL, an open pixel is appended, and the unsubscribe/preference links
// (already ours) are left alone. A link whose URL came from the data the template was
// rendered with (a trait, an event property) is left as rendered: signing it would make our
// click endpoint a signed redirect to wherever a user's data points. A link marked `<a data-lc-notrack href="…">` (a password reset, a magic link:
// anything whose URL is itself a secret) is not wrapped, in the HTML nor where the plain-text
// part shows it; the attribute itself is removed.
import { decodeEntities } from '../templates/html-to-text.ts';
import type { RenderedContent } from '../provider.ts';
import type { MessageRef, TrackingLinks } from '../links.ts';

/** An `<a …>` start tag; quoted attribute values may contain `>`. */
const A_TAG = /<a\b(?:[^>"']|"[^"]*"|'[^']*')*>/gi;
/** One attribute of a start tag: name, then a double-quoted, single-quoted or bare value, if any. */
const ATTR = /\s+([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
const TEXT_URL = /\bhttps?:\/\/[^\s<>"')\]]+/gi;
export const NO_TRACK_ATTRIBUTE = 'data-lc-notrack';

export interface RewriteOptions {
  links: TrackingLinks;
  /** Whether a link was written in the templates (TemplateRenderer.isTemplateLink); only those are wrapped. */
  isTemplateLink: (url: string) => boolean;
  /** When the message is rendered: its click and open links expire counted from then. */
  now: number;
  /** URLs under this prefix (our own tracking/unsubscribe/preference links) are not wrapped. */
  publicBaseUrl: string;
}

interface Attribute {
  name: string;
  value: string | undefined;
  /** Where the attribute (with its leading whitespace) starts and ends in the tag. */
  start: number;
  end: number;
  /** Where its value starts and ends (inside the quotes), when it has one. */
  valueStart: number;
  quote: '"' | "'" | '';
}

function attributes(tag: string): Attribute[] {
  const out: Attribute[] = [];
  // Skip `<a`: the tag name is not an attribute.
  ATTR.lastIndex = 2;
  for (let m = ATTR.exec(tag); m; m = ATTR.exec(tag)) {
    const value = m[2] ?? m[3] ?? m[4];
    const quote = m[2] !== undefined ? '"' : m[3] !== undefined ? "'" : '';
    const valueStart =
      value === undefined ? -1 : m.index + m[0].length - value.length - quote.length;
    out.push({
      name: m[1]!.toLowerCase(),
      value,
      start: m.index,
      end: m.index + m[0].length,
      valueStart,
      quote,
    });
  }
  return out;
}

export function rewriteEmail(
  content: RenderedContent,
  ref: MessageRef,
  opts: RewriteOptions,
): RenderedContent {
  const own = opts.publicBaseUrl.replace(/\/+$/, '') + '/';
  const trackable = (url: string) =>
    /^https?:\/\//i.test(url) && !url.startsWith(own) && opts.isTemplateLink(url);
  /** Targets of the links marked not to be tracked, as the plain-text part shows them. */
  const untracked: string[] = [];
  const out: RenderedContent = { ...content };
  if (content.html !== undefined) {
    let html = content.html.replace(A_TAG, (tag) => {
      const attrs = attributes(tag);
      const href = attrs.find((a) => a.name === 'href');
      const optOut = attrs.filter((a) => a.name === NO_TRACK_ATTRIBUTE);
      if (optOut.length > 0) {
        if (href?.value !== undefined) untracked.push(decodeEntities(href.value).trim());
        let kept = tag;
        for (const a of optOut.reverse()) kept = kept.slice(0, a.start) + kept.slice(a.end);
        return kept;
      }
      if (href?.value === undefined) return tag;
      const target = decodeEntities(href.value).trim();
      // Links that are not wrapped keep their markup exactly as the template rendered it.
      if (!trackable(target)) return tag;
      const click = opts.links.click(ref, target, opts.now);
      const q = href.quote || '"';
      return `${tag.slice(0, href.valueStart - href.quote.length)}${q}${click}${q}${tag.slice(href.valueStart + href.value.length + href.quote.length)}`;
    });
    const pixel = `<img src="${opts.links.openPixel(ref, opts.now)}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">`;
    html = /<\/body>/i.test(html) ? html.replace(/<\/body>/i, `${pixel}</body>`) : html + pixel;
    out.html = html;
  }
  if (content.text !== undefined) {
    const text = content.text;
    // A marked link's URL, shown here as htmlToText writes it; the match may be shorter than it
    // (it stops at `)` and quotes), never longer.
    const marked = (url: string, at: number) =>
      untracked.some((u) => u.length >= url.length && text.startsWith(u, at));
    out.text = text.replace(TEXT_URL, (url: string, at: number) =>
      !trackable(url) || marked(url, at) ? url : opts.links.click(ref, url, opts.now),
    );
  }
  return out;
}
