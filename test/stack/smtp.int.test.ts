// The SMTP sink is a real SMTP server: nodemailer delivers to it over SMTP and the test
// reads back headers and both bodies through its HTTP API.
import nodemailer from 'nodemailer';
import { afterAll, describe, expect, it } from 'vitest';
import { isolate } from '../support/isolation.ts';
import { smtpSinkClient } from '../support/smtp.ts';

describe('SMTP sink', () => {
  const iso = isolate('smtp');
  const config = iso.config();
  const sink = smtpSinkClient();
  const transport = nodemailer.createTransport(config.delivery.smtpUrls[0]!);

  afterAll(() => transport.close());

  it('receives a message over SMTP and serves its headers and bodies', async () => {
    const messageId = `<${iso.id}@lifecycle.test>`;
    const to = `${iso.id}@example.com`;
    const info = await transport.sendMail({
      from: 'Lifecycle <hello@example.com>',
      to,
      subject: 'Your export is ready — ünïcode too',
      messageId,
      text: 'Hello Ada,\nyour export is ready.',
      html: '<p>Hello <b>Ada</b>, your export is ready.</p>',
      headers: {
        'List-Unsubscribe': '<https://example.com/u/abc>',
        'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
      },
    });
    expect(info.accepted).toEqual([to]);
    expect(info.response).toMatch(/^250 .*queued as/);

    const m = await sink.waitForMessage(messageId);
    expect(m.messageId).toBe(`${iso.id}@lifecycle.test`);
    expect(m.from).toEqual(['hello@example.com']);
    expect(m.to).toEqual([to]);
    expect(m.envelope).toEqual({ mailFrom: 'hello@example.com', rcptTo: [to] });
    expect(m.subject).toBe('Your export is ready — ünïcode too');
    expect(m.headers['list-unsubscribe']).toBe('<https://example.com/u/abc>');
    expect(m.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
    expect(m.text.trim()).toBe('Hello Ada,\nyour export is ready.');
    expect(m.html).toContain('<b>Ada</b>');

    const raw = await sink.raw(m.id);
    expect(raw).toContain(`Message-ID: ${messageId}`);
    expect(await sink.list({ to })).toHaveLength(1);
    expect(await sink.get('1-000000000000')).toBeUndefined();
  });
});
