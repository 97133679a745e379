import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import { createTemplateRenderer } from '../templates/index.ts';
import type { Channel } from '../../platform/contracts.ts';
import { createTrackingLinks, tokenOf } from '../links.ts';
import { createRenderStage, type Renderer } from './render.ts';
import { testContext } from '../../test/support/delivery-context.ts';

const links = createTrackingLinks({
  publicBaseUrl: 'https://t.example.com',
  signingSecret: 'a-secret-of-sixteen+',
});

/** Renders a tiny email that uses the personal data and both links the pipeline provides. */
const renderer: Renderer = {
  render(template: string, channel: Channel, locale: string, data: Record<string, unknown>) {
    if (template === 'missing') throw new Error('template "missing" not found');
    const user = data.user as { firstName: string };
    const l = data.links as { unsubscribe: string; preferences: string };
    return {
      subject: `Hi ${user.firstName} (${locale}, ${channel})`,
      html: `<body><a href="https://shop.example.com/">Shop</a> <a href="${l.unsubscribe}">Unsubscribe</a> <a href="${l.preferences}">Prefs</a></body>`,
      text: 'Shop: https://shop.example.com/',
    };
  },
  versionFor: () => null,
  isTemplateLink: (url) => url === 'https://shop.example.com/',
};

describe('render stage', () => {
  const stage = createRenderStage({ renderer, links, publicBaseUrl: 'https://t.example.com' });

  it('renders with signed links, rewrites clicks and adds one-click unsubscribe headers to marketing email', async () => {
    const ctx = testContext();
    expect((await stage.run(ctx)).kind).toBe('continue');
    const m = ctx.message!;
    expect(m.content.subject).toBe('Hi Ada (en, email)');
    const unsub = m.headers!['List-Unsubscribe']!.slice(1, -1);
    expect(links.readUnsubscribe(tokenOf(unsub), ctx.now)).toMatchObject({
      status: 'valid',
      value: { sendId: 'send-1', userId: 'user-1', category: 'marketing' },
    });
    expect(m.headers!['List-Unsubscribe-Post']).toBe('List-Unsubscribe=One-Click');
    expect(m.content.html).toContain(`href="${unsub}"`);
    const click = /href="(https:\/\/t\.example\.com\/t\/c\?t=[^"]+)"/.exec(m.content.html!)![1]!;
    expect(links.readClick(tokenOf(click), ctx.now)).toMatchObject({
      status: 'valid',
      value: { url: 'https://shop.example.com/' },
    });
    expect(m.content.html).toContain('/t/o.gif?t=');
    expect(m.content.text).toMatch(/Shop: https:\/\/t\.example\.com\/t\/c\?t=/);
    // Counted from the render: click links live 90 days, unsubscribe links 365.
    const day = 24 * 3600 * 1000;
    expect(links.readClick(tokenOf(click), ctx.now + 89 * day).status).toBe('valid');
    expect(links.readClick(tokenOf(click), ctx.now + 91 * day).status).toBe('expired');
    expect(links.readUnsubscribe(tokenOf(unsub), ctx.now + 364 * day).status).toBe('valid');
    expect(links.readUnsubscribe(tokenOf(unsub), ctx.now + 366 * day).status).toBe('expired');
  });

  it('puts no unsubscribe headers on transactional email and no tracking on other channels', async () => {
    const tx = testContext({ category: 'transactional' });
    await stage.run(tx);
    expect(tx.message!.headers).toEqual({});
    const push = testContext({ channel: 'push' });
    await stage.run(push);
    expect(push.message!.content.html).toContain('href="https://shop.example.com/"');
  });

  it('tracks a link written in the template and leaves a link from the user data as it is', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lc-render-'));
    try {
      mkdirSync(join(dir, 'hello'));
      writeFileSync(
        join(dir, 'hello', 'email.en.hbs'),
        '---\nsubject: Hi {{user.firstName}}\n---\n<p><a href="https://shop.example.com/new">New</a> <a href="{{user.website}}">Your website</a></p>',
      );
      const real = createTemplateRenderer({ dir }, silentLogger());
      const withData = createRenderStage({
        renderer: real,
        links,
        publicBaseUrl: 'https://t.example.com',
      });
      const ctx = testContext({
        send: {
          template: 'hello',
          data: { user: { firstName: 'Mallory', website: 'https://evil.example/login' } },
        },
      });
      expect((await withData.run(ctx)).kind).toBe('continue');
      const { html, text } = ctx.message!.content;
      const hrefs = [...html!.matchAll(/href="([^"]+)"/g)].map((m) => m[1]!);
      expect(links.readClick(tokenOf(hrefs[0]!), ctx.now)).toMatchObject({
        status: 'valid',
        value: { url: 'https://shop.example.com/new' },
      });
      expect(hrefs[1]).toBe('https://evil.example/login');
      expect(html).not.toMatch(/t\/c\?t=[^"]*"[^>]*>Your website/);
      expect(text).toContain('Your website (https://evil.example/login)');
      expect(text).toMatch(/New \(https:\/\/t\.example\.com\/t\/c\?t=/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails a send whose template cannot render into the DLQ', async () => {
    expect(await stage.run(testContext({ send: { template: 'missing' } }))).toEqual({
      kind: 'failed',
      dlq: true,
      reason: 'render: template "missing" not found',
    });
  });
});
