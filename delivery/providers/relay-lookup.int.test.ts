// Reconciliation against a real relay log: the configured email provider (LC_SMTP_URLS plus
// LC_SMTP_LOOKUP_URLS pointing at the stack's SMTP sink search) says whether it already has a
// message, by the Message-ID it writes itself.
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import { isolate, stack } from '../../test/support/isolation.ts';
import { smtpSinkClient } from '../../test/support/smtp.ts';
import { createProviders } from '../channels.ts';
import type { OutgoingMessage, Provider } from '../provider.ts';

const iso = isolate('lookup');
const config = iso.config({
  LC_SMTP_LOOKUP_URLS: `${stack().smtpApiUrl.replace(/\/$/, '')}/messages?messageId={messageId}`,
  LC_SMTP_LOOKUP_FOUND: '/messages',
});
const providers = createProviders(config, { logger: silentLogger() });
const email = providers.get('email')![0]!;

afterAll(async () => {
  await Promise.all([...providers.values()].flat().map((p: Provider) => p.close?.()));
});

const message = (sendId: string): OutgoingMessage => ({
  sendId,
  ruleId: 'welcome',
  category: 'transactional',
  channel: 'email',
  recipient: { userId: 'u1', email: `ada.${iso.id}@example.com`, locale: 'en', timezone: 'UTC' },
  content: { subject: 'Welcome', text: 'Hello Ada', html: '<p>Hello Ada</p>' },
});

describe('email provider with a relay lookup', () => {
  it('knows a message the relay accepted and one it never saw', async () => {
    const sent = message(`${iso.id}:sent`);
    expect(email.accepted).toBeTypeOf('function');
    expect(await email.accepted!(sent)).toBe(false);
    expect((await email.send(sent)).status).toBe('sent');
    await smtpSinkClient().waitForMessage(`${iso.id}-sent@example.com`, 15_000);
    expect(await email.accepted!(sent)).toBe(true);
    expect(await email.accepted!(message(`${iso.id}:never`))).toBe(false);
  });
});
