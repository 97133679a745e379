import { describe, expect, it } from 'vitest';
import { LifecycleError } from '../platform/errors.ts';
import {
  withoutActionTokens,
  decodeCursor,
  encodeCursor,
  listMessages,
  messageListSql,
  messageMetaSql,
  resendCommand,
  resendId,
  statusSql,
  type ChannelMessage,
  type MessageDetail,
} from './messages.ts';
import { bindParams, type AnalyticsStore } from './store.ts';

describe('message log cursor', () => {
  it('round-trips the sort key of the last item, and is opaque', () => {
    const key = { createdAt: 1_780_000_000_123, sendId: 'welcome:u1:ab', channel: 'email' };
    const cursor = encodeCursor(key);
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(cursor)).toEqual(key);
  });

  it.each([
    ['not base64 JSON', 'hello'],
    ['a JSON of another shape', Buffer.from('{"a":1}').toString('base64url')],
    ['a negative time', Buffer.from('[-1,"s","email"]').toString('base64url')],
  ])('refuses %s with a coded error naming the field', (_n, cursor) => {
    let err: unknown;
    try {
      decodeCursor(cursor);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LifecycleError);
    expect((err as LifecycleError).code).toBe('LC_ERR_BAD_REQUEST');
    expect((err as LifecycleError).details).toEqual({ field: 'cursor' });
  });
});

describe('message log SQL', () => {
  const bound = (f: Parameters<typeof messageListSql>[1], params: Record<string, unknown>) =>
    bindParams(messageListSql('lc', f), { limit: 21, ...params });

  it('filters only by what is given, and pages by the sort key, newest first', () => {
    const plain = messageListSql('lc', { userId: 'u1' });
    expect(plain).toContain('WHERE user_id = {userId:String}');
    expect(plain).not.toMatch(/cursorAt|startsWith|recipient|since/);
    expect(plain).toMatch(/ORDER BY created_at_ms DESC, send_id DESC, channel DESC\nLIMIT/);
    const paged = messageListSql('lc', { userId: 'u1', cursor: 'x', since: 5 });
    expect(paged).toContain('created_at_ms >= {since:UInt64}');
    expect(paged).toMatch(/created_at_ms < \{cursorAt:UInt64\} OR \(created_at_ms = /);
  });

  it('matches an email address case-insensitively and other addresses exactly, on the channel it went to', () => {
    const email = messageListSql('lc', { to: 'Ada@Example.com' });
    expect(email).toContain('lower(recipient) = lower({to:String})');
    expect(email).toContain('(send_id, channel) IN (SELECT send_id, channel FROM lc.messages');
    expect(messageListSql('lc', { to: '+15550100' })).toContain('recipient = {to:String}');
    expect(messageListSql('lc', { sendId: 'welcome:' })).toContain(
      'startsWith(send_id, {sendId:String})',
    );
  });

  it('binds to plain literals on servers without query parameters, user text quoted, nothing 18.16 lacks', () => {
    for (const sql of [
      bound(
        { userId: "o'brien", to: "x'@example.com", sendId: 's', since: 1, cursor: 'c' },
        {
          userId: "o'brien",
          to: "x'@example.com",
          sendId: 's',
          since: 1,
          cursorAt: 2,
          cursorSend: "s'",
          cursorChannel: 'email',
        },
      ),
      bindParams(statusSql('lc'), { ids: ["a'b"] }),
      bindParams(messageMetaSql('lc'), { ids: ['a'], cutoff: 0 }),
    ]) {
      expect(sql).not.toMatch(/\{[a-zA-Z]+:/);
      expect(sql).not.toMatch(/\bOVER\s*\(|\bFINAL\b|JSONExtract/);
    }
    expect(bound({ userId: "o'brien" }, { userId: "o'brien" })).toContain("user_id = 'o\\'brien'");
  });

  it('refuses database names that are not plain identifiers', () => {
    expect(() => messageListSql('lc; DROP', { userId: 'u' })).toThrow(/plain ClickHouse/);
  });
});

describe('listing messages', () => {
  const store: AnalyticsStore = {
    command: async () => undefined,
    insert: async () => undefined,
    query: async () => [],
    close: async () => undefined,
  };
  it('needs to be told whose messages, and a page size from 1 to 100', async () => {
    const opts = { bodyTtlDays: 30 };
    await expect(listMessages(store, 'lc', { limit: 10 }, opts)).rejects.toThrow(
      /give userId, to \(a recipient address\) or sendId/,
    );
    await expect(listMessages(store, 'lc', { userId: 'u', limit: 0 }, opts)).rejects.toThrow(
      /limit must be an integer from 1 to 100/,
    );
    await expect(listMessages(store, 'lc', { userId: 'u', limit: 101 }, opts)).rejects.toThrow(
      /from 1 to 100/,
    );
    expect(await listMessages(store, 'lc', { userId: 'u', limit: 100 }, opts)).toEqual({
      messages: [],
      next: null,
    });
  });
});

describe('resend', () => {
  const channel = (over: Partial<ChannelMessage> = {}): ChannelMessage => ({
    channel: 'email',
    status: 'opened',
    reason: null,
    to: 'ada@example.com',
    templateVersion: 3,
    locale: 'en',
    sentAt: 1000,
    content: { subject: 'Hi', html: '<p>Hi</p>', text: 'Hi', other: {} },
    data: { user: { email: 'ada@example.com', firstName: 'Ada' } },
    omitted: [],
    bodyExpiresAt: 1000 + 30 * 86_400_000,
    bodyExpired: false,
    history: [],
    ...over,
  });
  const original = (channels: ChannelMessage[]): MessageDetail => ({
    sendId: 'welcome:u1:t1',
    userId: 'u1',
    ruleId: 'welcome',
    campaignId: 'c1',
    category: 'marketing',
    template: 'welcome',
    priority: 40,
    holdout: false,
    createdAt: 900,
    origin: null,
    channels,
  });

  it('derives the new sendId from the original, the channel and the request key', () => {
    const id = resendId('welcome:u1:t1', 'email', 'key-1');
    expect(id).toMatch(/^resend:[0-9a-f]{24}$/);
    expect(resendId('welcome:u1:t1', 'email', 'key-1')).toBe(id);
    expect(resendId('welcome:u1:t1', 'email', 'key-2')).not.toBe(id);
    expect(resendId('welcome:u1:t1', 'sms', 'key-1')).not.toBe(id);
    expect(resendId('welcome:u1:t2', 'email', 'key-1')).not.toBe(id);
  });

  it('is the same template at the logged version, with the logged data, on one channel, in the original category', () => {
    expect(resendCommand(original([channel()]), 'email', 'key-1', 5000)).toEqual({
      sendId: resendId('welcome:u1:t1', 'email', 'key-1'),
      ruleId: 'welcome',
      userId: 'u1',
      category: 'marketing',
      priority: 40,
      template: 'welcome',
      channels: ['email'],
      variant: null,
      holdout: false,
      triggeredBy: { eventId: 'resend:welcome:u1:t1', eventType: 'message.resend' },
      createdAt: 5000,
      expiresAt: null,
      data: { user: { email: 'ada@example.com', firstName: 'Ada' } },
      origin: 'resend:welcome:u1:t1',
      campaignId: 'c1',
      templateVersion: 3,
    });
    // A template without versions is rendered as it is now.
    expect(
      resendCommand(original([channel({ templateVersion: null })]), 'email', 'k', 1),
    ).not.toHaveProperty('templateVersion');
  });

  it.each([
    [
      'a channel it was not sent on',
      [channel({ channel: 'sms', bodyExpiresAt: null, content: null, data: null })],
      'sms',
      /was not sent on sms \(its status: opened\): only a message delivery recorded as sent can be resent/,
    ],
    [
      'a send the policy chain stopped',
      [
        channel({
          status: 'suppressed',
          reason: 'no_opt_in:marketing:email',
          to: null,
          bodyExpiresAt: null,
          content: null,
          data: null,
        }),
      ],
      'email',
      /\(its status: suppressed, no_opt_in:marketing:email\)/,
    ],
    [
      'a message past the body TTL',
      [channel({ bodyExpired: true, content: null, data: null })],
      'email',
      /LC_MESSAGE_BODY_TTL_DAYS\): it can no longer be resent/,
    ],
    [
      'a message logged without its data',
      [channel({ data: null, omitted: ['data'] })],
      'email',
      /logged without its data/,
    ],
  ] as const)('refuses %s with a conflict that says why', (_n, channels, ch, message) => {
    let err: unknown;
    try {
      resendCommand(original([...channels]), ch, 'k', 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LifecycleError);
    expect((err as LifecycleError).code).toBe('LC_ERR_CONFLICT');
    expect((err as LifecycleError).status).toBe(409);
    expect((err as Error).message).toMatch(message);
  });
});

describe('what staff read of a message', () => {
  const token = 'eyJ1IjoiYWRhIn0.c2lnbmF0dXJlLWJ5dGVz';
  it('keeps no token of a link that acts as the recipient: opt-in confirmation, unsubscribe, preferences', () => {
    const html = [
      `<a href="https://lc.example.com/c?t=${token}">Confirm</a>`,
      // Handlebars escapes '=' in an attribute.
      `<a href="https://lc.example.com/t/u?t&#x3D;${token}">Unsubscribe</a>`,
      `<a href="https://lc.example.com/p?t=${token}">Preferences</a>`,
      `<a href="https://lc.example.com/t/c?t=${token}">Read more</a>`,
      `<img src="https://lc.example.com/t/o.gif?t=${token}">`,
    ].join('');
    const shown = withoutActionTokens({
      subject: 'Confirm your subscription',
      html,
      text: `Confirm: https://lc.example.com/c?t=${token}`,
      other: {},
    });
    expect(shown.html).toContain('/c?t=redacted"');
    expect(shown.html).toContain('/t/u?t&#x3D;redacted"');
    expect(shown.html).toContain('/p?t=redacted"');
    expect(shown.text).toBe('Confirm: https://lc.example.com/c?t=redacted');
    // Tracked links and the pixel only record what a reader did: they keep their token.
    expect(shown.html).toContain(`/t/c?t=${token}`);
    expect(shown.html).toContain(`/t/o.gif?t=${token}`);
    // In the send's data too, at any depth.
    expect(
      withoutActionTokens({ optIn: { confirmUrl: `https://lc.example.com/c?t=${token}`, n: 1 } }),
    ).toEqual({ optIn: { confirmUrl: 'https://lc.example.com/c?t=redacted', n: 1 } });
  });
});
