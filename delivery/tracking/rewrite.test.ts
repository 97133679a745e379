// Link rewriting of rendered email: which links become signed click URLs, which stay as they
// are (own links, mailto, links marked data-lc-notrack), in the HTML and in the text part.
import { describe, expect, it } from 'vitest';
import { htmlToText } from '../templates/html-to-text.ts';
import { rewriteEmail } from './rewrite.ts';
import { createTrackingLinks, tokenOf, type MessageRef } from '../links.ts';

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
const NOW = Date.parse('2026-03-10T12:00:00Z');
// Every link of these tests counts as written in the templates, except where a test says otherwise.
const opts = {
  links,
  publicBaseUrl: 'https://t.example.com',
  isTemplateLink: () => true,
  now: NOW,
};
const hrefsOf = (html: string) =>
  [...html.matchAll(/href=(?:"([^"]*)"|'([^']*)')/g)].map((m) => m[1] ?? m[2]!);
const clickTarget = (url: string) => {
  const read = links.readClick(tokenOf(url), NOW);
  return read.status === 'valid' ? read.value.url : undefined;
};

describe('rewriteEmail', () => {
  it('wraps http links in html and text, keeps own and mailto links, adds the pixel', () => {
    const out = rewriteEmail(
      {
        subject: 'Hi',
        html: '<html><body><a href="https://shop.example.com/x?a=1&amp;b=2">Go</a> <a href=\'mailto:a@b.c\'>m</a> <a href="https://t.example.com/t/u?t=abc">unsub</a></body></html>',
        text: 'Go: https://shop.example.com/x?a=1&b=2 now',
      },
      ref,
      opts,
    );
    const hrefs = [...out.html!.matchAll(/href=["']([^"']+)["']/g)].map((m) => m[1]!);
    expect(hrefs[0]!.startsWith('https://t.example.com/t/c?t=')).toBe(true);
    expect(clickTarget(hrefs[0]!)).toBe('https://shop.example.com/x?a=1&b=2');
    expect(hrefs[1]).toBe('mailto:a@b.c');
    expect(hrefs[2]).toBe('https://t.example.com/t/u?t=abc');
    expect(out.html).toMatch(
      /<img src="https:\/\/t\.example\.com\/t\/o\.gif\?t=[^"]+"[^>]*><\/body>/,
    );
    const textUrl = /https:\/\/t\.example\.com\/t\/c\?t=\S+/.exec(out.text!)![0];
    expect(clickTarget(textUrl)).toBe('https://shop.example.com/x?a=1&b=2');
    expect(out.subject).toBe('Hi');
  });
});

describe('rewriteEmail: links from the data', () => {
  it('wraps only links written in the templates; a link from the data stays as rendered, in the HTML and in the text', () => {
    const written = 'https://shop.example.com/sale';
    const fromData = 'https://evil.example/phish?x=1&amp;y=2';
    const html = `<html><body><a href="${written}">Sale</a> <a href="${fromData}">My site</a></body></html>`;
    const out = rewriteEmail({ subject: 's', html, text: htmlToText(html) }, ref, {
      ...opts,
      isTemplateLink: (url) => url === written,
    });
    const [first, second] = hrefsOf(out.html!);
    expect(clickTarget(first!)).toBe(written);
    expect(second).toBe(fromData);
    expect(out.text).toContain('My site (https://evil.example/phish?x=1&y=2)');
    const clicks = [...out.text!.matchAll(/https:\/\/t\.example\.com\/t\/c\?t=[^\s)]+/g)].map((m) =>
      clickTarget(m[0]),
    );
    expect(clicks).toEqual([written]);
  });
});

describe('rewriteEmail: links marked data-lc-notrack', () => {
  const reset = 'https://app.example.com/reset?token=s3cret&amp;u=7';
  const html = `<html><body><p><a class="button" data-lc-notrack href="${reset}">Reset your password</a></p><p><a href="https://app.example.com/help?topic=reset">Help</a></p></body></html>`;

  it('keeps the href as rendered, removes the attribute, and still wraps the other links', () => {
    const out = rewriteEmail({ subject: 'Reset', html, text: htmlToText(html) }, ref, opts);
    const [first, second] = hrefsOf(out.html!);
    expect(first).toBe(reset);
    expect(out.html).toContain(`<a class="button" href="${reset}">Reset your password</a>`);
    expect(out.html).not.toContain('data-lc-notrack');
    expect(clickTarget(second!)).toBe('https://app.example.com/help?topic=reset');
  });

  it('leaves the marked URL alone where the generated text part shows it, and wraps the rest', () => {
    const text = htmlToText(html);
    expect(text).toContain('https://app.example.com/reset?token=s3cret&u=7');
    const out = rewriteEmail({ subject: 'Reset', html, text }, ref, opts);
    expect(out.text).toContain(
      'Reset your password (https://app.example.com/reset?token=s3cret&u=7)',
    );
    const clicks = [...out.text!.matchAll(/https:\/\/t\.example\.com\/t\/c\?t=[^\s)]+/g)].map((m) =>
      clickTarget(m[0]),
    );
    expect(clicks).toEqual(['https://app.example.com/help?topic=reset']);
  });

  it.each([
    [
      'bare, before href',
      '<a data-lc-notrack href="https://x.example/k?t=1">a</a>',
      '<a href="https://x.example/k?t=1">a</a>',
    ],
    [
      'with a value, after href',
      `<a href='https://x.example/k?t=1' data-lc-notrack="true">a</a>`,
      `<a href='https://x.example/k?t=1'>a</a>`,
    ],
    [
      'upper case, other attributes around it',
      '<A title="a > b" DATA-LC-NOTRACK=1 href="https://x.example/k" target=_blank>a</A>',
      '<A title="a > b" href="https://x.example/k" target=_blank>a</A>',
    ],
  ])('%s', (_name, tag, expected) => {
    expect(rewriteEmail({ subject: 's', html: tag }, ref, opts).html).toContain(expected);
  });

  it('does not mistake the words in an attribute value for the attribute', () => {
    const out = rewriteEmail(
      { subject: 's', html: '<a title="data-lc-notrack" href="https://x.example/k">a</a>' },
      ref,
      opts,
    );
    expect(clickTarget(hrefsOf(out.html!)[0]!)).toBe('https://x.example/k');
    expect(out.html).toContain('title="data-lc-notrack"');
  });

  it('keeps links it does not wrap exactly as rendered (escaped quotes stay escaped)', () => {
    const mailto = '<a href="mailto:a@example.com?subject=&quot; onclick=&quot;x">m</a>';
    expect(rewriteEmail({ subject: 's', html: mailto }, ref, opts).html).toContain(mailto);
  });
});
