import { describe, expect, it } from 'vitest';
import type { Channel } from '../../platform/contracts.ts';
import { createTrackingLinks, tokenOf } from '../links.ts';
import { createRenderStage, type Renderer } from './render.ts';
import { testContext } from '../../test/support/delivery-context.ts';

const links = createTrackingLinks({ publicBaseUrl: 'https://t.example.com', signingSecret: 'a-secret-of-sixteen+' });

/** Renders a tiny email that uses the personal data and both links the pipeline provides. */
const renderer: Renderer = {
  render(template: string, channel: Channel, locale: string, data: Record<string, unknown>) {
    if (template === 'missing') throw new Error('template "missing" not found');
    const user = data.user as { firstName: string };
    const l = data.links as { unsubscribe: string; preferences: string };
    return { subject: `Hi ${user.firstName} (${locale}, ${channel})`, html: `<body><a href="https://shop.example.com/">Shop</a> <a href="${l.unsubscribe}">Unsubscribe</a> <a href="${l.preferences}">Prefs</a></body>`, text: 'Shop: https://shop.example.com/' };
  },
};

describe('render stage', () => {
  const stage = createRenderStage({ renderer, links, publicBaseUrl: 'https://t.example.com' });

  it('renders with signed links, rewrites clicks and adds one-click unsubscribe headers to marketing email', async () => {
    const ctx = testContext();
    expect((await stage.run(ctx)).kind).toBe('continue');
    const m = ctx.message!;
    expect(m.content.subject).toBe('Hi Ada (en, email)');
    const unsub = m.headers!['List-Unsubscribe']!.slice(1, -1);
    expect(links.readUnsubscribe(tokenOf(unsub))).toMatchObject({ sendId: 'send-1', userId: 'user-1', category: 'marketing' });
    expect(m.headers!['List-Unsubscribe-Post']).toBe('List-Unsubscribe=One-Click');
    expect(m.content.html).toContain(`href="${unsub}"`);
    const click = /href="(https:\/\/t\.example\.com\/t\/c\?t=[^"]+)"/.exec(m.content.html!)![1]!;
    expect(links.readClick(tokenOf(click))?.url).toBe('https://shop.example.com/');
    expect(m.content.html).toContain('/t/o.gif?t=');
    expect(m.content.text).toMatch(/Shop: https:\/\/t\.example\.com\/t\/c\?t=/);
  });

  it('puts no unsubscribe headers on transactional email and no tracking on other channels', async () => {
    const tx = testContext({ category: 'transactional' });
    await stage.run(tx);
    expect(tx.message!.headers).toEqual({});
    const push = testContext({ channel: 'push' });
    await stage.run(push);
    expect(push.message!.content.html).toContain('href="https://shop.example.com/"');
  });

  it('fails a send whose template cannot render into the DLQ', async () => {
    expect(await stage.run(testContext({ send: { template: 'missing' } }))).toEqual({ kind: 'failed', dlq: true, reason: 'render: template "missing" not found' });
  });
});
