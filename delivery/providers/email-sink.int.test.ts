// The shipped templates rendered and sent through the configured email provider to the
// stack's SMTP sink, read back as a recipient's mail client would see them.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import { isolate } from '../../test/support/isolation.ts';
import { smtpSinkClient } from '../../test/support/smtp.ts';
import { createTemplateRenderer } from '../templates/index.ts';
import { createSmtpProvider, domainOf, unsubscribeHeaders } from './email.ts';
import type { Provider } from '../provider.ts';

const iso = isolate('email');
const config = iso.config();
const sink = smtpSinkClient();
const renderer = createTemplateRenderer(
  { dir: join(import.meta.dirname, '../../templates') },
  silentLogger(),
);
const provider: Provider = createSmtpProvider(
  { name: 'smtp-1', url: config.delivery.smtpUrls[0]!, from: config.delivery.emailFrom },
  { logger: silentLogger() },
);

afterAll(async () => {
  await provider.close?.();
});

describe('templates through SMTP to the sink', () => {
  it('arrives with the German subject, both parts, the sendId Message-ID and one-click unsubscribe', async () => {
    const sendId = `${iso.id}-welcome`;
    const email = `ada.${iso.id}@example.com`;
    const unsubscribe = `https://lc.example.com/u/${iso.id}`;
    const content = renderer.render('welcome', 'email', 'de-AT', {
      user: { email, firstName: 'Ada', plan: 'trial', locale: 'de-AT', timezone: 'Europe/Vienna' },
      event: { type: 'user_registered', properties: {} },
      rule: { id: 'welcome' },
      links: { unsubscribe, preferences: 'https://lc.example.com/p/x' },
    });
    const result = await provider.send({
      sendId,
      ruleId: 'welcome',
      category: 'marketing',
      channel: 'email',
      recipient: { userId: 'u1', email, locale: 'de-AT', timezone: 'Europe/Vienna' },
      content,
      headers: unsubscribeHeaders(unsubscribe),
    });
    expect(result.status).toBe('sent');

    const got = await sink.waitForMessage(
      `${sendId}@${domainOf(config.delivery.emailFrom)}`,
      15_000,
    );
    expect(got.to).toEqual([email]);
    expect(got.subject).toBe('Willkommen bei Example, Ada!');
    expect(got.html).toContain('<html lang="de">');
    expect(got.html).toContain(`href="${unsubscribe}"`);
    expect(got.text).toContain('Arbeitsbereich öffnen (https://app.example.com/start)');
    expect(got.text).not.toMatch(/<[a-z]/i);
    expect(got.headers['list-unsubscribe']).toBe(`<${unsubscribe}>`);
    expect(got.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
  });
});
