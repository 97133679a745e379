import { describe, expect, it } from 'vitest';
import { matches, parseMessage, stripAngles } from './smtp-sink.ts';

const raw = Buffer.from(
  [
    'From: "Lifecycle" <hello@example.com>',
    'To: Ada <ada@example.com>, bob@example.com',
    'Subject: =?UTF-8?Q?Caf=C3=A9?=',
    'Message-ID: <abc@lifecycle>',
    'List-Unsubscribe: <https://example.com/u/1>,',
    ' <mailto:unsub@example.com>',
    'X-Tag: one',
    'X-Tag: two',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Hello Ada',
    '',
  ].join('\r\n'),
);

describe('parseMessage', () => {
  it('extracts ids, addresses, decoded subject and unfolded headers', async () => {
    const m = await parseMessage(raw, {
      id: '1-abc',
      envelope: { mailFrom: 'bounce@example.com', rcptTo: ['ada@example.com'] },
      receivedAt: new Date(0),
    });
    expect(m.messageId).toBe('abc@lifecycle');
    expect(m.from).toEqual(['hello@example.com']);
    expect(m.to).toEqual(['ada@example.com', 'bob@example.com']);
    expect(m.subject).toBe('Café');
    expect(m.headers['list-unsubscribe']).toBe(
      '<https://example.com/u/1>, <mailto:unsub@example.com>',
    );
    expect(m.headers['x-tag']).toEqual(['one', 'two']);
    expect(m.text.trim()).toBe('Hello Ada');
    expect(m.html).toBeNull();
    expect(m.size).toBe(raw.length);
    expect(m.receivedAt).toBe('1970-01-01T00:00:00.000Z');
  });
});

describe('matches', () => {
  it('filters by Message-ID with or without brackets, recipient (any case) and subject', async () => {
    const m = await parseMessage(raw, {
      id: '1-abc',
      envelope: { mailFrom: null, rcptTo: ['hidden@example.com'] },
      receivedAt: new Date(0),
    });
    expect(matches(m, { messageId: '<abc@lifecycle>' })).toBe(true);
    expect(matches(m, { messageId: 'abc@lifecycle' })).toBe(true);
    expect(matches(m, { messageId: 'other' })).toBe(false);
    expect(matches(m, { to: 'BOB@example.com' })).toBe(true);
    expect(matches(m, { to: 'hidden@example.com' })).toBe(true);
    expect(matches(m, { to: 'eve@example.com' })).toBe(false);
    expect(matches(m, { subject: 'Caf' })).toBe(true);
    expect(matches(m, { subject: 'Tea' })).toBe(false);
    expect(stripAngles(' <x@y> ')).toBe('x@y');
  });
});
