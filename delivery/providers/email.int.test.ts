// The SMTP provider against a real SMTP server (smtp-server, the relay's side) on 127.0.0.1.
import { createServer, type AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import { createSmtpProvider } from './email.ts';
import type { OutgoingMessage, Provider } from '../provider.ts';

const received: { envelopeTo: string[]; mail: ParsedMail }[] = [];
/** SMTP sessions opened against the relay, to check that the pool reuses them. */
let sessions = 0;
let server: SMTPServer;
let port = 0;
const providers: Provider[] = [];

function smtpError(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

beforeAll(async () => {
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onConnect(_session, cb) {
      sessions++;
      cb();
    },
    onRcptTo(address, _session, cb) {
      if (address.address.startsWith('nobody@'))
        return cb(
          smtpError(550, '5.1.1 <nobody@example.com>: Recipient address rejected: User unknown'),
        );
      if (address.address.startsWith('later@'))
        return cb(smtpError(451, '4.7.1 Greylisted, try again later'));
      cb();
    },
    onData(stream, session, cb) {
      simpleParser(stream, (err: unknown, mail: ParsedMail) => {
        if (err) return cb(err as Error);
        received.push({ envelopeTo: session.envelope.rcptTo.map((r) => r.address), mail });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.server.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const p of providers) await p.close?.();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function provider(url = `smtp://127.0.0.1:${port}`): Provider {
  const p = createSmtpProvider(
    {
      name: 'smtp-1',
      url,
      from: 'Example <hello@mail.example.com>',
      maxConnections: 2,
      connectionTimeoutMs: 2000,
    },
    { logger: silentLogger() },
  );
  providers.push(p);
  return p;
}

function message(over: Partial<OutgoingMessage> & { email?: string } = {}): OutgoingMessage {
  return {
    sendId: 'snd_abc123',
    ruleId: 'welcome',
    category: 'marketing',
    channel: 'email',
    recipient: {
      userId: 'u1',
      email: over.email ?? 'ada@example.com',
      locale: 'en',
      timezone: 'UTC',
    },
    content: { subject: 'Welcome, Ada', html: '<p>Hello <b>Ada</b></p>', text: 'Hello Ada\n' },
    headers: {
      'List-Unsubscribe': '<https://lc.example.com/u/tok>',
      'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
    },
    ...over,
  };
}

describe('SMTP provider', () => {
  it('sends text + HTML with the sendId Message-ID and RFC 8058 headers', async () => {
    const result = await provider().send(message());
    expect(result).toEqual({ status: 'sent', providerMessageId: '<snd_abc123@mail.example.com>' });
    const got = received.find((r) => r.mail.messageId === '<snd_abc123@mail.example.com>');
    expect(got).toBeDefined();
    const mail = got!.mail;
    expect(got!.envelopeTo).toEqual(['ada@example.com']);
    expect(mail.subject).toBe('Welcome, Ada');
    expect(mail.from?.value[0]).toMatchObject({
      name: 'Example',
      address: 'hello@mail.example.com',
    });
    expect(mail.html).toContain('<p>Hello <b>Ada</b></p>');
    expect(mail.text).toBe('Hello Ada\n');
    const header = (name: string) =>
      mail.headerLines.find((h) => h.key === name)?.line.replace(/^[^:]+:\s*/, '');
    expect(header('list-unsubscribe')).toBe('<https://lc.example.com/u/tok>');
    expect(header('list-unsubscribe-post')).toBe('List-Unsubscribe=One-Click');
    expect(header('x-lifecycle-send-id')).toBe('snd_abc123');
  });

  it('keeps many messages flowing over the pool, on at most maxConnections sessions', async () => {
    const p = provider();
    const before = sessions;
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => p.send(message({ sendId: `pool-${i}` }))),
    );
    expect(results.every((r) => r.status === 'sent')).toBe(true);
    expect(received.filter((r) => r.mail.messageId?.startsWith('<pool-')).length).toBe(40);
    // maxConnections is 2: forty sessions would mean the pool options never reached nodemailer.
    expect(sessions - before).toBeLessThanOrEqual(2);
  });

  it('refuses a marketing email without List-Unsubscribe, without touching the relay', async () => {
    const before = received.length;
    const result = await provider().send(message({ sendId: 'no-unsub', headers: {} }));
    expect(result.status).toBe('permanent');
    expect(received.length).toBe(before);
    // Transactional mail needs no unsubscribe header.
    expect(
      (await provider().send(message({ sendId: 'tx-1', category: 'transactional', headers: {} })))
        .status,
    ).toBe('sent');
  });

  it('maps an unknown user (550 5.1.1) to a hard bounce', async () => {
    const result = await provider().send(
      message({ sendId: 'bounce-1', email: 'nobody@example.com' }),
    );
    expect(result).toMatchObject({ status: 'permanent', suppress: 'hard_bounce' });
  });

  it('maps greylisting (451) to retriable', async () => {
    const result = await provider().send(message({ sendId: 'grey-1', email: 'later@example.com' }));
    expect(result.status).toBe('retriable');
  });

  it('maps a relay that is down to retriable', async () => {
    // A port that was free a moment ago: nothing listens there.
    const free = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const result = await provider(`smtp://127.0.0.1:${free}`).send(message({ sendId: 'down-1' }));
    expect(result.status).toBe('retriable');
  });

  it('refuses an address trait that would add recipients, without touching the relay', async () => {
    const before = received.length;
    for (const email of [
      'ada@example.com, eve@example.com',
      'Eve <eve@example.com>',
      'ada@example.com\r\nBcc: eve@example.com',
      'not-an-address',
    ]) {
      expect(await provider().send(message({ sendId: 'inj', email })), email).toMatchObject({
        status: 'permanent',
        suppress: 'invalid_address',
      });
    }
    expect(received.length).toBe(before);
  });

  it('upgrades to STARTTLS over its own (Nagle-free) connection when the relay offers it', async () => {
    let secure: boolean | undefined;
    // smtp-server offers STARTTLS with its bundled self-signed certificate.
    const tlsRelay = new SMTPServer({
      authOptional: true,
      logger: false,
      onData(stream, session, cb) {
        secure = session.secure;
        stream.resume();
        stream.on('end', () => cb());
      },
    });
    await new Promise<void>((resolve) => tlsRelay.listen(0, '127.0.0.1', resolve));
    const tlsPort = (tlsRelay.server.address() as AddressInfo).port;
    const p = provider(`smtp://127.0.0.1:${tlsPort}/?tls.rejectUnauthorized=false`);
    try {
      expect((await p.send(message({ sendId: 'tls-1' }))).status).toBe('sent');
      expect(secure).toBe(true);
    } finally {
      // The pool keeps its session open; the relay's close would wait for it.
      await p.close?.();
      await new Promise<void>((resolve) => tlsRelay.close(() => resolve()));
    }
  });

  it('refuses recipients without an address', async () => {
    const m = message();
    delete m.recipient.email;
    expect(await provider().send(m)).toMatchObject({
      status: 'permanent',
      suppress: 'invalid_address',
    });
  });
});
