// Short links of SMS and push: which links are shortened, how the code is made, what the code
// holds, and when it stops working.
import { describe, expect, it } from 'vitest';
import { createTrackingLinks, type MessageRef } from '../links.ts';
import {
  createMemoryShortLinkStore,
  createShortener,
  SHORT_CODE,
  shortenLinks,
  type ShortLinkStore,
} from './short-links.ts';

const BASE = 'https://lc.example.com';
const SECRET = 'short-link-test-secret';
const ref: MessageRef = {
  sendId: 'payment-failed:u1:ab12',
  userId: 'u1',
  ruleId: 'payment-failed',
  channel: 'sms',
  variant: null,
  category: 'transactional',
};
const links = createTrackingLinks({ publicBaseUrl: BASE, signingSecret: SECRET });

function setup(clock = { now: Date.UTC(2026, 11, 1) }, store?: ShortLinkStore) {
  const s = store ?? createMemoryShortLinkStore(() => clock.now);
  const shortener = createShortener({
    store: s,
    links,
    signingSecret: SECRET,
    publicBaseUrl: BASE,
    ttlS: 60,
  });
  return { store: s, shortener, clock };
}

const codeOf = (url: string) => url.slice(`${BASE}/s/`.length);

describe('shortenLinks', () => {
  it('shortens the links written in the template, keeps sentence punctuation, and leaves data links and our own alone', async () => {
    const { shortener, clock } = setup();
    const template = new Set(['https://app.example.com/billing', 'https://app.example.com/help']);
    const out = await shortenLinks(
      {
        body: 'Declined. Update your card: https://app.example.com/billing. Help: https://app.example.com/help, or https://evil.example/x and https://lc.example.com/p?t=abc',
        url: 'https://app.example.com/billing',
        title: 'Payment declined',
      },
      ref,
      {
        shortener,
        isTemplateLink: (u) => template.has(u),
        publicBaseUrl: BASE,
        now: clock.now,
      },
    );
    const urls = out.body!.match(/https:\/\/\S+/g)!;
    expect(urls).toHaveLength(4);
    expect(urls[0]).toMatch(/^https:\/\/lc\.example\.com\/s\/[0-9A-Za-z]{10}\.$/);
    expect(out.body).toContain('https://evil.example/x');
    expect(out.body).toContain('https://lc.example.com/p?t=abc');
    expect(out.title).toBe('Payment declined');
    // The push url is the same link of the same message: the same code.
    expect(out.url).toBe(urls[0]!.replace(/\.$/, ''));
  });

  it('gives a retried render the same code, different messages different codes', async () => {
    const { shortener, clock } = setup();
    const a = await shortener.shorten(ref, 'https://app.example.com/billing', clock.now);
    clock.now += 1000;
    const again = await shortener.shorten(ref, 'https://app.example.com/billing', clock.now);
    const other = await shortener.shorten(
      { ...ref, sendId: 'payment-failed:u2:cd34' },
      'https://app.example.com/billing',
      clock.now,
    );
    expect(again).toBe(a);
    expect(other).not.toBe(a);
    expect(SHORT_CODE.test(codeOf(a))).toBe(true);
  });

  it('stores the signed click of the message under the code, until its lifetime ends', async () => {
    const { shortener, store, clock } = setup();
    const url = await shortener.shorten(ref, 'https://app.example.com/billing', clock.now);
    const token = (await store.get(codeOf(url)))!;
    expect(links.readClick(token, clock.now)).toEqual({
      status: 'valid',
      value: { ...ref, url: 'https://app.example.com/billing' },
    });
    clock.now += 60_000;
    expect(await store.get(codeOf(url))).toBeNull();
    // The token inside expires with it, should a store keep it longer.
    expect(links.readClick(token, clock.now).status).toBe('expired');
  });

  it('takes another code when one is held by a different link', async () => {
    const clock = { now: Date.UTC(2026, 11, 1) };
    const inner = createMemoryShortLinkStore(() => clock.now);
    let first = true;
    // A store in which the first code asked for is already another link's.
    const store: ShortLinkStore = {
      ...inner,
      put: async (code, token, ttlS) => {
        if (first) {
          first = false;
          await inner.put(
            code,
            links.click(ref, 'https://other.example/', clock.now).split('t=')[1]!,
            ttlS,
          );
        }
        return inner.put(code, token, ttlS);
      },
    };
    const { shortener } = setup(clock, store);
    const url = await shortener.shorten(ref, 'https://app.example.com/billing', clock.now);
    const held = links.readClick((await inner.get(codeOf(url)))!, clock.now);
    expect(held.status === 'valid' && held.value.url).toBe('https://app.example.com/billing');
  });
});
