import { describe, expect, it } from 'vitest';
import { createSigner, createTrackingLinks, tokenOf, type MessageRef } from './links.ts';

const ref: MessageRef = { sendId: 's-1', userId: 'u-1', ruleId: 'r-1', channel: 'email', variant: 'a', category: 'marketing' };
const links = createTrackingLinks({ publicBaseUrl: 'https://t.example.com/', signingSecret: 'a-secret-of-sixteen+' });

describe('signed tokens', () => {
  it('round-trips a click and refuses any change to it', () => {
    const url = links.click(ref, 'https://shop.example.com/p?a=1&b=2');
    expect(url.startsWith('https://t.example.com/t/c?t=')).toBe(true);
    const token = tokenOf(url);
    expect(links.readClick(token)).toEqual({ ...ref, url: 'https://shop.example.com/p?a=1&b=2' });
    const [body, mac] = token.split('.') as [string, string];
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), l: 'https://evil.example' })).toString('base64url');
    expect(links.readClick(`${forged}.${mac}`)).toBeNull();
    expect(links.readClick(`${body}.${mac.slice(0, -2)}AA`)).toBeNull();
    expect(links.readClick(body)).toBeNull();
    expect(links.readClick('')).toBeNull();
  });

  it('binds the purpose: a click token is not an unsubscribe token', () => {
    const click = tokenOf(links.click(ref, 'https://x.example'));
    expect(links.readUnsubscribe(click)).toBeNull();
    expect(links.readUnsubscribe(tokenOf(links.unsubscribe(ref)))).toEqual(ref);
    expect(links.readOpen(tokenOf(links.openPixel(ref)))).toEqual(ref);
  });

  it('refuses a token signed with another secret', () => {
    const other = createSigner('another-secret-16chars');
    expect(createSigner('a-secret-of-sixteen+').verify('click', other.sign('click', { a: 1 }))).toBeNull();
  });

  it('refuses non-http targets even when signed', () => {
    const signer = createSigner('a-secret-of-sixteen+');
    const t = signer.sign('click', { s: 's', u: 'u', r: 'r', c: 'email', v: null, k: 'm', l: 'javascript:alert(1)' });
    expect(links.readClick(t)).toBeNull();
  });

  it('expires preference links', () => {
    const now = Date.UTC(2026, 0, 1);
    const t = tokenOf(links.preferences('u-1', now));
    expect(links.readPreferences(t, now + 1000)?.userId).toBe('u-1');
    expect(links.readPreferences(t, now + 91 * 24 * 3600 * 1000)).toBeNull();
  });
});
