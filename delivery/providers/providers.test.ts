import { describe, expect, it } from 'vitest';
import { signInappToken, verifyInappToken } from '../inapp/token.ts';
import { decodeCursor } from '../inapp/inbox.ts';
import {
  addressOf,
  classifySmtpError,
  domainOf,
  isSingleAddress,
  messageIdFor,
  unsubscribeHeaders,
} from './email.ts';
import { apnsIdFor } from './push.ts';
import { signWebhook, verifyWebhookSignature } from './webhook.ts';

describe('SMTP error classification', () => {
  const table: [string, object, { status: string; suppress?: string }][] = [
    [
      '550 5.1.1 unknown user at RCPT',
      {
        code: 'EENVELOPE',
        responseCode: 550,
        response: '550 5.1.1 <x@y>: Recipient address rejected: User unknown',
        command: 'RCPT TO',
      },
      { status: 'permanent', suppress: 'hard_bounce' },
    ],
    [
      '553 bad mailbox syntax',
      {
        code: 'EENVELOPE',
        responseCode: 553,
        response: '553 5.1.3 Bad recipient address syntax',
        command: 'RCPT TO',
      },
      { status: 'permanent', suppress: 'invalid_address' },
    ],
    [
      '5.1.x after DATA (late bounce)',
      {
        code: 'EMESSAGE',
        responseCode: 550,
        response: '550 5.1.1 mailbox unavailable',
        command: 'DATA',
      },
      { status: 'permanent', suppress: 'hard_bounce' },
    ],
    [
      'policy block',
      {
        code: 'EMESSAGE',
        responseCode: 554,
        response: '554 5.7.1 Message rejected as spam',
        command: 'DATA',
      },
      { status: 'permanent' },
    ],
    [
      'mailbox full',
      {
        code: 'EENVELOPE',
        responseCode: 552,
        response: '552 5.2.2 Mailbox full',
        command: 'RCPT TO',
      },
      { status: 'permanent' },
    ],
    [
      'greylisting',
      {
        code: 'EENVELOPE',
        responseCode: 451,
        response: '451 4.7.1 Greylisted, try again later',
        command: 'RCPT TO',
      },
      { status: 'retriable' },
    ],
    [
      'relay busy',
      {
        code: 'EPROTOCOL',
        responseCode: 421,
        response: '421 4.3.2 Service not available',
        command: 'CONN',
      },
      { status: 'retriable' },
    ],
    [
      'connection refused',
      { code: 'ESOCKET', message: 'connect ECONNREFUSED 127.0.0.1:25' },
      { status: 'retriable' },
    ],
    ['timeout', { code: 'ETIMEDOUT', message: 'Greeting never received' }, { status: 'retriable' }],
    [
      'relay auth',
      {
        code: 'EAUTH',
        responseCode: 535,
        response: '535 5.7.8 Authentication failed',
        command: 'AUTH PLAIN',
      },
      { status: 'retriable' },
    ],
    [
      'malformed address refused by the client',
      { code: 'EENVELOPE', command: 'API', message: 'Invalid recipient "a b"' },
      { status: 'permanent', suppress: 'invalid_address' },
    ],
  ];
  for (const [name, err, expected] of table) {
    it(name, () => {
      const r = classifySmtpError(err);
      expect(r.status).toBe(expected.status);
      expect(r.status === 'permanent' ? r.suppress : undefined).toBe(expected.suppress);
    });
  }

  it('calls a connection lost after it was made ambiguous (the relay may have the message), a refusal or an SMTP reply not', () => {
    const ambiguous = (err: unknown) => {
      const r = classifySmtpError(err);
      return r.status === 'retriable' && r.ambiguous === true;
    };
    // What nodemailer reports for a relay that took the data and dropped the connection, or reset it.
    expect(
      ambiguous({
        code: 'ECONNECTION',
        command: 'CONN',
        message: 'Connection closed unexpectedly',
      }),
    ).toBe(true);
    expect(
      ambiguous({ code: 'ESOCKET', command: 'CONN', message: 'read ECONNRESET', syscall: 'read' }),
    ).toBe(true);
    expect(ambiguous({ code: 'ETIMEDOUT', command: 'CONN', message: 'Timeout' })).toBe(true);
    expect(
      ambiguous({
        code: 'ESOCKET',
        command: 'CONN',
        message: 'connect ECONNREFUSED 127.0.0.1:25',
        syscall: 'connect',
      }),
    ).toBe(false);
    expect(ambiguous({ code: 'ETIMEDOUT', message: 'Greeting never received' })).toBe(false);
    expect(
      ambiguous({
        code: 'EPROTOCOL',
        responseCode: 421,
        response: '421 4.3.2 Service not available',
      }),
    ).toBe(false);
    expect(
      ambiguous({ code: 'EAUTH', responseCode: 535, response: '535 5.7.8 Authentication failed' }),
    ).toBe(false);
  });

  it('accepts one plain address (IDN and UTF-8 included), nothing that adds recipients', () => {
    for (const ok of [
      'ada@example.com',
      'a.b+tag@mail.example.co.uk',
      'jörg@bücher.de',
      "o'brien@example.ie",
    ])
      expect(isSingleAddress(ok), ok).toBe(true);
    for (const bad of [
      'a@example.com, b@example.com',
      'Eve <eve@example.com>',
      'a@example.com\nBcc: b@example.com',
      'a@localhost',
      'no-at-sign',
      'a@@b.com',
      'a@b..com',
    ]) {
      expect(isSingleAddress(bad), bad).toBe(false);
    }
    expect(addressOf('Example <hello@example.com>')).toBe('hello@example.com');
    expect(addressOf('hello@example.com')).toBe('hello@example.com');
  });

  it('builds Message-IDs and unsubscribe headers', () => {
    expect(domainOf('Example <hello@Mail.Example.com>')).toBe('mail.example.com');
    expect(domainOf('hello@example.org')).toBe('example.org');
    expect(messageIdFor('snd_1:abc/def', 'example.com')).toBe('<snd_1-abc-def@example.com>');
    expect(unsubscribeHeaders('https://x.test/u/1', 'unsub@x.test')).toEqual({
      'List-Unsubscribe': '<https://x.test/u/1>, <mailto:unsub@x.test>',
      'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
    });
  });
});

describe('webhook signature', () => {
  it('verifies what it signs, and nothing else', () => {
    const body = '{"a":1}';
    const header = signWebhook('s3cret', body, 1_700_000_000);
    expect(header).toMatch(/^t=1700000000,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature('s3cret', body, header, 1_700_000_100_000)).toBe(true);
    expect(verifyWebhookSignature('s3cret', '{"a":2}', header, 1_700_000_100_000)).toBe(false);
    expect(verifyWebhookSignature('other', body, header, 1_700_000_100_000)).toBe(false);
    expect(verifyWebhookSignature('s3cret', body, header, 1_700_000_000_000 + 301_000)).toBe(false);
    expect(verifyWebhookSignature('s3cret', body, 't=x,v1=zz', 1_700_000_000_000)).toBe(false);
  });
});

describe('in-app tokens', () => {
  it('carry the userId until they expire and cannot be forged', () => {
    const t = signInappToken('secret-secret-secret', 'user:42 ü', {
      ttlMs: 60_000,
      now: 1_000_000,
    });
    expect(verifyInappToken('secret-secret-secret', t, 1_000_000)).toBe('user:42 ü');
    expect(verifyInappToken('secret-secret-secret', t, 1_061_000)).toBeNull();
    expect(verifyInappToken('another-secret-xxx', t, 1_000_000)).toBeNull();
    const [, exp, sig] = t.split('.');
    const forged = `${Buffer.from('admin').toString('base64url')}.${exp}.${sig}`;
    expect(verifyInappToken('secret-secret-secret', forged, 1_000_000)).toBeNull();
    expect(verifyInappToken('secret-secret-secret', 'garbage', 1_000_000)).toBeNull();
  });

  it('rejects malformed inbox cursors', () => {
    expect(decodeCursor('not base64 json')).toBeNull();
    expect(decodeCursor(Buffer.from('[1,"a"]').toString('base64url'))).toEqual({
      score: 1,
      id: 'a',
    });
  });
});

describe('push', () => {
  it('derives a stable UUID-shaped apns-id per send and token', () => {
    const id = apnsIdFor('s1', 'tok');
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(apnsIdFor('s1', 'tok')).toBe(id);
    expect(apnsIdFor('s2', 'tok')).not.toBe(id);
  });
});
