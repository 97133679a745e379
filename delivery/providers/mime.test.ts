import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { buildMime, formatAddress } from './mime.ts';

const base = {
  from: 'Zoë Müller <hello@example.com>',
  to: 'ada@example.com',
  subject: 'Willkommen, Zoë! Ihr Konto ist bereit – los geht’s',
  messageId: '<snd-1@example.com>',
  date: new Date(Date.UTC(2026, 10, 22, 8, 0, 0)),
};

describe('buildMime', () => {
  it('round-trips subject, names, both parts and extra headers through a real parser', async () => {
    const text = `Hallo Zoë,\n.\na line with = and trailing space \n${'x'.repeat(300)}\n`;
    const html = '<p>Hallo Zoë</p>\n<a href="https://e.com/?a=1&b=2">Link</a>';
    const raw = buildMime({
      ...base,
      text,
      html,
      headers: {
        'List-Unsubscribe': '<https://e.com/u/1>',
        'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
      },
    });
    const lines = raw.toString('latin1').split('\r\n');
    expect(lines.every((l) => l.length <= 78)).toBe(true);
    expect(raw.toString('latin1')).not.toMatch(/[^\r]\n/);
    const m = await simpleParser(raw);
    expect(m.subject).toBe(base.subject);
    expect(m.from?.value).toEqual([{ name: 'Zoë Müller', address: 'hello@example.com' }]);
    expect(m.messageId).toBe('<snd-1@example.com>');
    expect(m.date?.toISOString()).toBe('2026-11-22T08:00:00.000Z');
    expect(m.text).toBe(text);
    expect(m.html).toBe(html);
    expect(m.headerLines.find((h) => h.key === 'list-unsubscribe-post')?.line).toBe(
      'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
    );
    expect(m.headerLines.find((h) => h.key === 'list-unsubscribe')?.line).toBe(
      'List-Unsubscribe: <https://e.com/u/1>',
    );
    expect(raw.toString()).toMatch(/Content-Type: multipart\/alternative/);
    expect(raw.toString()).not.toMatch(/base64/i);
  });

  it('sends a single part when there is only one body', async () => {
    const m = await simpleParser(buildMime({ ...base, text: 'only text' }));
    expect(m.text?.trim()).toBe('only text');
    expect(m.html).toBe(false);
    const h = await simpleParser(buildMime({ ...base, html: '<b>only html</b>' }));
    expect(h.html).toBe('<b>only html</b>');
    expect(() => buildMime(base)).toThrow(/text or an HTML body/);
  });

  it('never lets a line break in data start a header of its own', async () => {
    const raw = buildMime({
      ...base,
      subject: 'hi\r\nBcc: eve@example.com',
      text: 'x',
      headers: { 'X-Lifecycle-Send-Id': 's\nCc: eve@example.com' },
    });
    const m = await simpleParser(raw);
    expect(m.bcc).toBeUndefined();
    expect(m.cc).toBeUndefined();
    expect(m.subject).toBe('hi Bcc: eve@example.com');
  });

  it('quotes or encodes display names only when they need it', () => {
    expect(formatAddress('Example <hello@example.com>')).toBe('Example <hello@example.com>');
    expect(formatAddress('"Acme, Inc." <a@example.com>')).toBe('"Acme, Inc." <a@example.com>');
    expect(formatAddress('a@example.com')).toBe('a@example.com');
    expect(formatAddress('Zoë <z@example.com>')).toBe('=?UTF-8?Q?Zo=C3=AB?= <z@example.com>');
  });
});
