import { describe, expect, it } from 'vitest';
import {
  createSigner,
  createTrackingLinks,
  LEGACY_UNSUBSCRIBE_ACCEPTED_UNTIL,
  tokenOf,
  type LinkRead,
  type MessageRef,
} from './links.ts';

const ref: MessageRef = {
  sendId: 's-1',
  userId: 'u-1',
  ruleId: 'r-1',
  channel: 'email',
  variant: 'a',
  category: 'marketing',
};
const links = createTrackingLinks({
  publicBaseUrl: 'https://t.example.com/',
  signingSecret: 'a-secret-of-sixteen+',
});
const NOW = Date.UTC(2026, 0, 1);
const DAY = 24 * 3600 * 1000;
const valid = <T>(read: LinkRead<T>): T | null => (read.status === 'valid' ? read.value : null);

describe('signed tokens', () => {
  it('round-trips a click and refuses any change to it', () => {
    const url = links.click(ref, 'https://shop.example.com/p?a=1&b=2', NOW);
    expect(url.startsWith('https://t.example.com/t/c?t=')).toBe(true);
    const token = tokenOf(url);
    expect(links.readClick(token, NOW)).toEqual({
      status: 'valid',
      value: { ...ref, url: 'https://shop.example.com/p?a=1&b=2' },
    });
    const [body, mac] = token.split('.') as [string, string];
    const forged = Buffer.from(
      JSON.stringify({
        ...JSON.parse(Buffer.from(body, 'base64url').toString()),
        l: 'https://evil.example',
      }),
    ).toString('base64url');
    expect(links.readClick(`${forged}.${mac}`, NOW)).toEqual({ status: 'invalid' });
    expect(links.readClick(`${body}.${mac.slice(0, -2)}AA`, NOW)).toEqual({ status: 'invalid' });
    expect(links.readClick(body, NOW)).toEqual({ status: 'invalid' });
    expect(links.readClick('', NOW)).toEqual({ status: 'invalid' });
  });

  it('binds the purpose: a click token is not an unsubscribe token', () => {
    const click = tokenOf(links.click(ref, 'https://x.example', NOW));
    expect(links.readUnsubscribe(click, NOW)).toEqual({ status: 'invalid' });
    expect(valid(links.readUnsubscribe(tokenOf(links.unsubscribe(ref, NOW)), NOW))).toEqual(ref);
    expect(valid(links.readOpen(tokenOf(links.openPixel(ref, NOW)), NOW))).toEqual(ref);
  });

  it('refuses a token signed with another secret', () => {
    const other = createSigner('another-secret-16chars');
    expect(
      createSigner('a-secret-of-sixteen+').verify('click', other.sign('click', { a: 1 })),
    ).toBeNull();
  });

  it('refuses non-http targets even when signed', () => {
    const signer = createSigner('a-secret-of-sixteen+');
    const t = signer.sign('click', {
      s: 's',
      u: 'u',
      r: 'r',
      c: 'email',
      v: null,
      k: 'm',
      l: 'javascript:alert(1)',
      e: NOW + DAY,
    });
    expect(links.readClick(t, NOW)).toEqual({ status: 'invalid' });
  });

  it('expires preference links after the unsubscribe lifetime (365 days by default)', () => {
    const t = tokenOf(links.preferences('u-1', NOW));
    expect(valid(links.readPreferences(t, NOW + 1000))?.userId).toBe('u-1');
    expect(valid(links.readPreferences(t, NOW + 364 * DAY))?.userId).toBe('u-1');
    expect(links.readPreferences(t, NOW + 366 * DAY)).toMatchObject({
      status: 'expired',
      value: { userId: 'u-1' },
    });
  });
});

describe('expiry', () => {
  const short = createTrackingLinks({
    publicBaseUrl: 'https://t.example.com/',
    signingSecret: 'a-secret-of-sixteen+',
    lifetimes: { engagementMs: 10 * DAY, consentMs: 40 * DAY },
  });

  it('click and open links expire after their lifetime; an expired click still says where it pointed', () => {
    const click = tokenOf(short.click(ref, 'https://shop.example.com/x', NOW));
    const open = tokenOf(short.openPixel(ref, NOW));
    expect(short.readClick(click, NOW + 9 * DAY).status).toBe('valid');
    expect(short.readOpen(open, NOW + 9 * DAY).status).toBe('valid');
    expect(short.readClick(click, NOW + 11 * DAY)).toEqual({
      status: 'expired',
      value: { ...ref, url: 'https://shop.example.com/x' },
    });
    expect(short.readOpen(open, NOW + 11 * DAY)).toEqual({ status: 'expired', value: ref });
  });

  it('unsubscribe and preference links live longer', () => {
    const unsubscribe = tokenOf(short.unsubscribe(ref, NOW));
    const preferences = tokenOf(short.preferences('u-1', NOW));
    expect(short.readUnsubscribe(unsubscribe, NOW + 39 * DAY).status).toBe('valid');
    expect(short.readPreferences(preferences, NOW + 39 * DAY).status).toBe('valid');
    expect(short.readUnsubscribe(unsubscribe, NOW + 41 * DAY)).toEqual({
      status: 'expired',
      value: ref,
    });
    expect(short.readPreferences(preferences, NOW + 41 * DAY).status).toBe('expired');
  });

  it('the expiry is signed: moving it forward breaks the signature', () => {
    const token = tokenOf(short.click(ref, 'https://shop.example.com/x', NOW));
    const [body, mac] = token.split('.') as [string, string];
    const later = Buffer.from(
      JSON.stringify({
        ...JSON.parse(Buffer.from(body, 'base64url').toString()),
        e: NOW + 1000 * DAY,
      }),
    ).toString('base64url');
    expect(short.readClick(`${later}.${mac}`, NOW + 11 * DAY)).toEqual({ status: 'invalid' });
  });

  it('tokens minted before expiries existed: clicks and opens count as expired, unsubscribes work until the cut-off date', () => {
    const signer = createSigner('a-secret-of-sixteen+');
    const wire = { s: 's-1', u: 'u-1', r: 'r-1', c: 'email', v: 'a', k: 'marketing' };
    const legacyClick = signer.sign('click', { ...wire, l: 'https://evil.example/' });
    expect(links.readClick(legacyClick, NOW)).toEqual({
      status: 'expired',
      value: { ...ref, url: 'https://evil.example/' },
    });
    expect(links.readOpen(signer.sign('open', wire), NOW).status).toBe('expired');
    const legacyUnsubscribe = signer.sign('unsubscribe', wire);
    expect(links.readUnsubscribe(legacyUnsubscribe, NOW)).toEqual({ status: 'valid', value: ref });
    expect(links.readUnsubscribe(legacyUnsubscribe, LEGACY_UNSUBSCRIBE_ACCEPTED_UNTIL).status).toBe(
      'expired',
    );
  });
});
