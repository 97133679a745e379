import { describe, expect, it } from 'vitest';
import { loadMessageTypes } from '../../platform/message-types.ts';
import {
  checkIdempotencyKey,
  checkSendMessage,
  isRefusal,
  recipientIdOf,
  requestFingerprint,
  type CheckedMessage,
  type SendRefusal,
} from './request.ts';

const LIMIT = 2048;
const valid = { template: 'welcome', userId: 'u1', category: 'transactional' };
const check = (m: unknown, prefix?: string) =>
  checkSendMessage(m, { maxDataBytes: LIMIT, ...(prefix ? { prefix } : {}) });
const refused = (m: unknown, prefix?: string): SendRefusal => {
  const r = check(m, prefix);
  if (!isRefusal(r)) throw new Error(`accepted: ${JSON.stringify(r)}`);
  return r;
};

describe('one message of the send API', () => {
  it('takes a message to a user with defaults: priority normal, channels from the template', () => {
    expect(check(valid)).toEqual({
      template: 'welcome',
      category: 'transactional',
      priority: 'normal',
      channels: null,
      recipient: { userId: 'u1' },
      data: {},
    } satisfies CheckedMessage);
  });

  it.each([
    [
      'no recipient',
      { template: 'welcome', category: 'transactional' },
      400,
      'userId',
      /needs a recipient: userId .* or to/,
    ],
    [
      'both userId and to',
      { ...valid, to: { email: 'a@example.com' } },
      400,
      'to',
      /both userId and to/,
    ],
    ['no category', { template: 'welcome', userId: 'u1' }, 400, 'category', /category is required/],
    [
      'an unknown category',
      { ...valid, category: 'promo' },
      400,
      'category',
      /category must be one of transactional, marketing/,
    ],
    [
      'a priority other than high or normal',
      { ...valid, priority: 'urgent' },
      400,
      'priority',
      /priority must be one of high, normal/,
    ],
    [
      'an unknown channel',
      { ...valid, channels: ['fax'] },
      400,
      'channels[0]',
      /channels\[0\] must be one of email, inapp, webhook, sms, push/,
    ],
    [
      'an unknown field (a misspelt one is not dropped)',
      { ...valid, chanels: ['email'] },
      400,
      'chanels',
      /unknown field chanels: a message takes template, userId, to, category, messageType, channels, priority, data/,
    ],
    [
      'data larger than the limit',
      { ...valid, data: { blob: 'x'.repeat(LIMIT) } },
      413,
      'data',
      /data is 2059 bytes as JSON, more than the 2048 bytes .* \(LC_SEND_MAX_DATA_BYTES\)/,
    ],
    [
      "data.user setting the user's address",
      { ...valid, data: { user: { email: 'someone-else@example.com' } } },
      400,
      'data.user.email',
      /a message to a userId goes to the user's own addresses.* send to it with `to`/,
    ],
    [
      'data.webhookUrl',
      { ...valid, data: { webhookUrl: 'https://attacker.example/hook' } },
      400,
      'data.webhookUrl',
      /cannot be set by a send/,
    ],
    [
      'an address that is no email address',
      { template: 'welcome', category: 'transactional', to: { email: 'not-an-address' } },
      400,
      'to.email',
      /"not-an-address" is not an email address/,
    ],
    [
      'a phone number without its country code',
      { template: 'welcome', category: 'transactional', to: { phone: '0151 1234567' } },
      400,
      'to.phone',
      /E\.164/,
    ],
    [
      'two raw addresses in one message',
      {
        template: 'welcome',
        category: 'transactional',
        to: { email: 'a@example.com', phone: '+4915112345678' },
      },
      400,
      'to',
      /exactly one address/,
    ],
    [
      'a channel the raw address does not serve',
      {
        template: 'welcome',
        category: 'transactional',
        to: { email: 'a@example.com' },
        channels: ['email', 'push'],
      },
      400,
      'channels',
      /to\.email is an address for the email channel only, not push/,
    ],
  ])('refuses %s, naming the field', (_what, message, status, field, text) => {
    const r = refused(message);
    expect(r).toMatchObject({ status, field });
    expect(r.message).toMatch(text);
    expect(r.code).toBe(status === 413 ? 'LC_ERR_PAYLOAD_TOO_LARGE' : 'LC_ERR_BAD_REQUEST');
  });

  it('checks a message type against the declared types when they are given', () => {
    const messageTypes = loadMessageTypes('rules/message-types.json');
    const typed = (m: Record<string, unknown>) =>
      checkSendMessage({ ...valid, ...m }, { maxDataBytes: LIMIT, messageTypes });
    expect(typed({ messageType: 'billing' })).toMatchObject({ messageType: 'billing' });
    expect(typed({ messageType: 'tips' })).toMatchObject({
      code: 'LC_ERR_UNKNOWN_MESSAGE_TYPE',
      field: 'messageType',
    });
    // Users cannot switch billing off: it may go on any channel.
    expect(isRefusal(typed({ messageType: 'billing', channels: ['webhook'] }))).toBe(false);
    // Without the declared types a name is carried as given; delivery decides.
    expect(check({ ...valid, messageType: 'anything' })).toMatchObject({
      messageType: 'anything',
    });
  });

  it('names the message of a batch in its fields and messages', () => {
    const r = refused({ template: 'welcome', category: 'promo', userId: 'u' }, 'messages[3].');
    expect(r).toMatchObject({ field: 'messages[3].category' });
    expect(r.message).toMatch(/^messages\[3\]\.category must be one of/);
    expect(refused(42, 'messages[0].')).toMatchObject({
      field: 'messages[0]',
      message: expect.stringMatching(/must be an object .*, not a number/),
    });
  });

  it('refuses data nested deeper than 32 levels before walking it', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 40; i++) deep = { a: deep };
    expect(refused({ ...valid, data: deep })).toMatchObject({ field: 'data' });
  });

  it('lets data.user add traits for the message other than addresses', () => {
    const r = check({ ...valid, data: { user: { firstName: 'Ada', locale: 'de' }, order: 7 } });
    expect(isRefusal(r)).toBe(false);
  });

  it('gives a raw address one recipient id whatever its case and spacing, and its channel', () => {
    const a = check({
      template: 'welcome',
      category: 'transactional',
      to: { email: ' Ada@Example.com ' },
    }) as CheckedMessage;
    const b = check({
      template: 'welcome',
      category: 'transactional',
      to: { email: 'ada@example.com' },
    }) as CheckedMessage;
    expect('raw' in a.recipient && a.recipient.raw).toEqual({
      kind: 'email',
      address: 'Ada@Example.com',
      normalised: 'ada@example.com',
    });
    if (!('raw' in a.recipient) || !('raw' in b.recipient)) throw new Error('not raw');
    expect(recipientIdOf(a.recipient.raw)).toBe(recipientIdOf(b.recipient.raw));
    expect(recipientIdOf(a.recipient.raw)).toMatch(/^recipient:[0-9a-f]{64}$/);
    const phone = check({
      template: 'payment_failed',
      category: 'transactional',
      to: { phone: '+49 151 1234-5678' },
    }) as CheckedMessage;
    expect('raw' in phone.recipient && phone.recipient.raw.address).toBe('+4915112345678');
    if (!('raw' in phone.recipient)) throw new Error('not raw');
    // An email address and a phone number never share an id.
    expect(recipientIdOf(phone.recipient.raw)).not.toBe(recipientIdOf(a.recipient.raw));
  });
});

describe('Idempotency-Key and the request it is bound to', () => {
  it('takes 1 to 255 visible characters, and refuses others with what to send', () => {
    expect(checkIdempotencyKey(undefined)).toBeNull();
    expect(checkIdempotencyKey('order-placed:user-123:order-456')).toBe(
      'order-placed:user-123:order-456',
    );
    expect(checkIdempotencyKey('k'.repeat(255))).toBe('k'.repeat(255));
    for (const bad of ['', ' padded', 'k'.repeat(256), 'tab\there', 'ünïcode'])
      expect(checkIdempotencyKey(bad), bad).toMatchObject({
        status: 400,
        field: 'Idempotency-Key',
        message: expect.stringMatching(/1 to 255 visible ASCII characters/),
      });
  });

  it('binds a key to the route and the body, whatever order the body lists its keys in', () => {
    const a = requestFingerprint('POST /v1/send', { template: 't', data: { a: 1, b: [1, 2] } });
    const b = requestFingerprint('POST /v1/send', { data: { b: [1, 2], a: 1 }, template: 't' });
    expect(a).toBe(b);
    expect(requestFingerprint('POST /v1/send', { template: 't', data: { a: 2 } })).not.toBe(a);
    expect(
      requestFingerprint('POST /v1/send/batch', { template: 't', data: { a: 1, b: [1, 2] } }),
    ).not.toBe(a);
  });
});
