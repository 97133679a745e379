// Tracking applied to rendered email content: every http(s) link becomes a signed click
// URL, an open pixel is appended, and the unsubscribe/preference links (already ours) are
// left alone.
import type { RenderedContent } from '../providers/types.ts';
import type { MessageRef, TrackingLinks } from './signing.ts';

const HREF = /(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2/gis;
const TEXT_URL = /\bhttps?:\/\/[^\s<>"')\]]+/gi;

const decodeEntities = (s: string) =>
  s.replace(/&amp;/g, '&').replace(/&#x2F;/gi, '/').replace(/&#x3D;/gi, '=').replace(/&#39;|&#x27;/gi, "'").replace(/&quot;/g, '"');

export interface RewriteOptions {
  links: TrackingLinks;
  /** URLs under this prefix (our own tracking/unsubscribe/preference links) are not wrapped. */
  publicBaseUrl: string;
}

export function rewriteEmail(content: RenderedContent, ref: MessageRef, opts: RewriteOptions): RenderedContent {
  const own = opts.publicBaseUrl.replace(/\/+$/, '') + '/';
  const wrap = (url: string) => (!/^https?:\/\//i.test(url) || url.startsWith(own) ? url : opts.links.click(ref, url));
  const out: RenderedContent = { ...content };
  if (content.html !== undefined) {
    let html = content.html.replace(HREF, (_m, pre: string, q: string, href: string) => `${pre}${q}${wrap(decodeEntities(href.trim()))}${q}`);
    const pixel = `<img src="${opts.links.openPixel(ref)}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">`;
    html = /<\/body>/i.test(html) ? html.replace(/<\/body>/i, `${pixel}</body>`) : html + pixel;
    out.html = html;
  }
  if (content.text !== undefined) out.text = content.text.replace(TEXT_URL, (url) => wrap(url));
  return out;
}
