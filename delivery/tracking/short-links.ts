// Short links for SMS and push, where a signed click URL of a few hundred characters does not
// fit: every http(s) link written in the template becomes `<LC_PUBLIC_BASE_URL>/s/<code>`, a
// 10-character base62 code. The code maps, in Redis with an expiry (LC_SHORT_LINK_TTL), to the
// same signed click token an email link carries (target, sendId, expiry inside the MAC), so
// `GET /s/:code` records the click exactly as `/t/c` does and redirects to what the product
// stored, never to anything the request says. A code is derived from the send, channel and URL
// with the signing secret: a retry renders the same text (the provider's idempotency key then
// covers identical content), and codes cannot be guessed or enumerated.
import { createHmac } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { KeySpace } from '../../platform/keys.ts';
import type { RenderedContent } from '../provider.ts';
import { tokenOf, type MessageRef, type TrackingLinks } from '../links.ts';

export const SHORT_CODE_LENGTH = 10;
export const SHORT_CODE = /^[0-9A-Za-z]{10}$/;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Where short codes live: the click token of each, until it expires. */
export interface ShortLinkStore {
  /** Stores `token` under `code` for `ttlS` unless the code holds another token; returns what the code holds afterwards. */
  put(code: string, token: string, ttlS: number): Promise<string>;
  /** Replaces the token of a code that is this link's already (a re-render: a new expiry). */
  refresh(code: string, token: string, ttlS: number): Promise<void>;
  get(code: string): Promise<string | null>;
}

export function createRedisShortLinkStore(deps: { redis: Redis; keys: KeySpace }): ShortLinkStore {
  const key = (code: string) => deps.keys.global(`dlv:s:${code}`);
  return {
    async put(code, token, ttlS) {
      const set = await deps.redis.set(key(code), token, 'EX', ttlS, 'NX');
      if (set === 'OK') return token;
      return (await deps.redis.get(key(code))) ?? token;
    },
    async refresh(code, token, ttlS) {
      await deps.redis.set(key(code), token, 'EX', ttlS);
    },
    get: (code) => deps.redis.get(key(code)),
  };
}

/** The in-memory twin (embedded demo, unit tests); `now` decides expiry. */
export function createMemoryShortLinkStore(now: () => number = Date.now): ShortLinkStore {
  const map = new Map<string, { token: string; until: number }>();
  const live = (code: string) => {
    const e = map.get(code);
    if (e && e.until <= now()) map.delete(code);
    return map.get(code);
  };
  return {
    async put(code, token, ttlS) {
      const held = live(code);
      if (held) return held.token;
      map.set(code, { token, until: now() + ttlS * 1000 });
      return token;
    },
    async refresh(code, token, ttlS) {
      map.set(code, { token, until: now() + ttlS * 1000 });
    },
    async get(code) {
      return live(code)?.token ?? null;
    },
  };
}

function base62(bytes: Buffer, length: number): string {
  let n = BigInt(`0x${bytes.toString('hex')}`);
  let out = '';
  for (let i = 0; i < length; i++) {
    out += ALPHABET[Number(n % 62n)];
    n /= 62n;
  }
  return out;
}

export interface Shortener {
  /** The short URL of `url` in the message `ref`, valid from `now` for the configured lifetime. */
  shorten(ref: MessageRef, url: string, now: number): Promise<string>;
}

export function createShortener(opts: {
  store: ShortLinkStore;
  links: TrackingLinks;
  signingSecret: string;
  publicBaseUrl: string;
  ttlS: number;
}): Shortener {
  const base = opts.publicBaseUrl.replace(/\/+$/, '');
  const codeFor = (ref: MessageRef, url: string, n: number) =>
    base62(
      createHmac('sha256', opts.signingSecret)
        .update(`short-link\n${ref.sendId}\n${ref.channel}\n${url}\n${n}`)
        .digest(),
      SHORT_CODE_LENGTH,
    );
  return {
    async shorten(ref, url, now) {
      const token = tokenOf(opts.links.click(ref, url, now, opts.ttlS * 1000));
      for (let n = 0; n < 4; n++) {
        const code = codeFor(ref, url, n);
        const held = await opts.store.put(code, token, opts.ttlS);
        if (held === token) return `${base}/s/${code}`;
        // The code exists: this link rendered before (a retry), or, once in 2^59, another one.
        const was = opts.links.readClick(held, now);
        if (
          was.status !== 'invalid' &&
          was.value.sendId === ref.sendId &&
          was.value.channel === ref.channel &&
          was.value.url === url
        ) {
          await opts.store.refresh(code, token, opts.ttlS);
          return `${base}/s/${code}`;
        }
      }
      throw new Error('could not allocate a short link code');
    },
  };
}

const TEXT_URL = /\bhttps?:\/\/[^\s<>"')\]]+/gi;
/** Sentence punctuation right after a URL in text belongs to the sentence. */
const TRAILING = /[.,;:!?]+$/;

/**
 * SMS and push content with its template links shortened: the SMS body or text, the push title,
 * body and url. Links from the data the template was rendered with (a trait, an event property)
 * and our own links are left as rendered, as in email: shortening them would make the product's
 * domain a tracked redirect to wherever a user's data points.
 */
export async function shortenLinks(
  content: RenderedContent,
  ref: MessageRef,
  opts: {
    shortener: Shortener;
    isTemplateLink: (url: string) => boolean;
    publicBaseUrl: string;
    now: number;
  },
): Promise<RenderedContent> {
  const own = opts.publicBaseUrl.replace(/\/+$/, '') + '/';
  const trackable = (url: string) => !url.startsWith(own) && opts.isTemplateLink(url);
  const rewrite = async (text: string): Promise<string> => {
    const parts: string[] = [];
    let last = 0;
    for (const m of text.matchAll(TEXT_URL)) {
      const url = m[0].replace(TRAILING, '');
      parts.push(text.slice(last, m.index));
      parts.push(trackable(url) ? await opts.shortener.shorten(ref, url, opts.now) : url);
      last = m.index + url.length;
    }
    parts.push(text.slice(last));
    return parts.join('');
  };
  const out: RenderedContent = { ...content };
  for (const field of ['title', 'body', 'text'] as const) {
    const v = content[field];
    if (v !== undefined) out[field] = await rewrite(v);
  }
  if (content.url !== undefined && /^https?:\/\//i.test(content.url) && trackable(content.url))
    out.url = await opts.shortener.shorten(ref, content.url, opts.now);
  return out;
}
