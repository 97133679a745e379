// Email over pooled SMTP (nodemailer): one provider per relay, Message-ID derived from the
// sendId (so a retried message is recognisably the same), text + HTML, and the RFC 8058
// one-click unsubscribe headers the pipeline passes. SMTP failures are classified into
// recipient problems (permanent, the address is suppressed) and transient ones (retry);
// a transient one that leaves open whether the relay took the message (the connection
// dropped or went silent after the data) is ambiguous, so the retry asks the relay first.
//
// Every sendMail has a deadline (LC_SMTP_SEND_TIMEOUT_MS): a pooled connection can hang
// after a reset without ever calling back, holding its slot of the pool, and with it the
// delay queue and every retry. A call past its deadline is answered as ambiguous and the
// pool is replaced, so the stuck connection is dropped with the old one.
import net from 'node:net';
import nodemailer from 'nodemailer';
import { parseConnectionUrl } from 'nodemailer/lib/shared/index.js';
import type { Logger } from 'pino';
import { buildMime } from './mime.ts';
import type { OutgoingMessage, Provider, ProviderResult } from '../provider.ts';

export interface SmtpProviderOptions {
  /** Provider name (`smtp-1`), used for the circuit breaker and in delivery outcomes. */
  name: string;
  /** smtp://user:pass@host:port or smtps://... (query options as nodemailer documents them). */
  url: string;
  /** From header, e.g. `Example <hello@example.com>`. */
  from: string;
  /** Domain of Message-IDs; defaults to the From address's domain. */
  messageIdDomain?: string;
  /** Parallel SMTP connections of the pool. */
  maxConnections?: number;
  /** Messages sent over one connection before it is recycled. */
  maxMessages?: number;
  connectionTimeoutMs?: number;
  socketTimeoutMs?: number;
  /** Longest a whole sendMail may take before it counts as an ambiguous failure (default 25 s). */
  sendTimeoutMs?: number;
  /**
   * The relay's message search (relay-lookup.ts): with it the provider answers `accepted`,
   * asking by the Message-ID it writes itself.
   */
  lookup?: (messageId: string) => Promise<boolean>;
}

/** RFC 8058 headers for a one-click unsubscribe URL (https, POST-able without a cookie). */
export function unsubscribeHeaders(url: string, mailto?: string): Record<string, string> {
  const targets = [`<${url}>`, ...(mailto ? [`<mailto:${mailto}>`] : [])];
  return {
    'List-Unsubscribe': targets.join(', '),
    'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
  };
}

export function domainOf(from: string): string {
  const m = /@([A-Za-z0-9.-]+)\s*>?\s*$/.exec(from.trim());
  return m?.[1]?.toLowerCase() ?? 'localhost';
}

/** `<sendId@domain>` with characters a Message-ID may not hold replaced. */
export function messageIdFor(sendId: string, domain: string): string {
  return `<${sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@${domain}>`;
}

interface SmtpErrorLike {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
  message?: string;
}

/**
 * Maps an SMTP/nodemailer error to a provider result:
 *  - 5xx on the recipient (RCPT TO, or an enhanced status 5.1.x): the address is dead:
 *    permanent + `invalid_address` (bad syntax: 553 / 5.1.3) or `hard_bounce` (no such user);
 *  - other 5xx (policy 5.7.x, message too large 5.3.4/552, content rejected): permanent,
 *    nothing to suppress (the address may be fine);
 *  - 4xx, connection, timeout, TLS and auth errors: retriable (another relay or a later try helps);
 *    a connection lost or timed out without a reply, other than at connecting, is also
 *    `ambiguous`: nodemailer does not say how far the transaction got, and the relay may
 *    have stored the message before the connection went.
 */
export function classifySmtpError(err: unknown): ProviderResult {
  const e = (err ?? {}) as SmtpErrorLike;
  const message = (e.message ?? String(err)).replace(/\s+/g, ' ').slice(0, 500);
  if (e.code === 'EENVELOPE' && e.command === 'API') {
    // Refused before talking to the server: the recipient address itself is malformed.
    if (/recipient|no recipients/i.test(message))
      return { status: 'permanent', error: message, suppress: 'invalid_address' };
    return { status: 'permanent', error: message };
  }
  const code =
    typeof e.responseCode === 'number'
      ? e.responseCode
      : Number(/^(\d{3})/.exec(e.response ?? '')?.[1] ?? NaN);
  const enhanced = /\b([245])\.(\d{1,3})\.(\d{1,3})\b/.exec(e.response ?? e.message ?? '');
  const cls = enhanced ? `${enhanced[1]}.${enhanced[2]}.${enhanced[3]}` : '';
  if (e.code === 'EAUTH' || code === 535 || code === 530)
    return { status: 'retriable', error: `relay authentication failed: ${message}` };
  if (!Number.isFinite(code) && connectionLost(e))
    return { status: 'retriable', error: message, ambiguous: true };
  if (Number.isFinite(code) && code >= 400 && code < 500)
    return { status: 'retriable', error: message };
  if (Number.isFinite(code) && code >= 500 && code < 600) {
    const onRecipient = e.command === 'RCPT TO' || cls.startsWith('5.1.');
    if (cls.startsWith('5.7.') || cls.startsWith('5.3.') || code === 552 || cls.startsWith('5.2.'))
      return { status: 'permanent', error: message };
    if (onRecipient) {
      if (code === 553 || cls === '5.1.3')
        return { status: 'permanent', error: message, suppress: 'invalid_address' };
      return { status: 'permanent', error: message, suppress: 'hard_bounce' };
    }
    return { status: 'permanent', error: message };
  }
  return { status: 'retriable', error: message };
}

/** A connection that went away or went silent after it was made (not a refusal, DNS, TLS or auth failure). */
function connectionLost(e: SmtpErrorLike & { syscall?: string }): boolean {
  if (e.syscall === 'connect' || e.syscall === 'getaddrinfo') return false;
  if (e.code === 'ECONNECTION' || e.code === 'ESOCKET' || e.code === 'ETIMEDOUT')
    return !/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|Greeting never received/i.test(
      e.message ?? '',
    );
  return false;
}

/** local@domain without spaces, quotes, angle brackets or list separators. */
const SINGLE_ADDRESS = /^[^\s@<>,;:"()[\]\\]+@[^\s@<>,;:"()[\]\\.]+(?:\.[^\s@<>,;:"()[\]\\.]+)+$/u;

export const isSingleAddress = (email: string): boolean => SINGLE_ADDRESS.test(email);

/** The bare address of a From header (`Name <a@b>` -> `a@b`). */
export function addressOf(from: string): string {
  return /<([^<>]+)>\s*$/.exec(from)?.[1]?.trim() ?? from.trim();
}

type SocketCallback = (
  err: Error | null,
  socketOptions?: { connection: net.Socket } | false,
) => void;

/**
 * Opens plain/STARTTLS relay connections with Nagle's algorithm off. SMTP is a chatty
 * request/response protocol of small segments; with Nagle on, the end of each message waits
 * for the relay's delayed ACK (tens of ms), which caps a pooled connection at a few dozen
 * messages per second. Implicit TLS (smtps) keeps nodemailer's own connection path.
 */
export function noDelaySocket(timeoutMs: number) {
  return (
    options: { host?: string; port?: number | string; secure?: boolean },
    callback: SocketCallback,
  ): void => {
    if (options.secure) return callback(null, false);
    const socket = net.connect({
      host: options.host ?? 'localhost',
      port: Number(options.port) || 587,
    });
    socket.setNoDelay(true);
    let done = false;
    const finish = (err: Error | null) => {
      if (done) return;
      done = true;
      socket.setTimeout(0);
      if (err) {
        socket.destroy();
        callback(err);
      } else callback(null, { connection: socket });
    };
    socket.setTimeout(timeoutMs, () =>
      finish(
        Object.assign(new Error(`connection timed out after ${timeoutMs} ms`), {
          code: 'ETIMEDOUT',
        }),
      ),
    );
    socket.once('connect', () => finish(null));
    socket.once('error', (err) => finish(err));
  };
}

/**
 * Transport options for a relay URL plus our own settings. nodemailer's createTransport
 * takes an options object with `url` as "the URL and nothing else": every other key (pool,
 * maxConnections, getSocket, timeouts, disableFileAccess) would be silently dropped and each
 * message would open its own connection. So the URL is parsed here (same parser, same query
 * options) and laid over our settings.
 */
export function smtpPoolOptions(
  url: string,
  settings: Record<string, unknown>,
): nodemailer.TransportOptions {
  // Query options in the URL (nodemailer documents them) win over our defaults.
  return { ...settings, ...parseConnectionUrl(url) } as nodemailer.TransportOptions;
}

export function createSmtpProvider(opts: SmtpProviderOptions, deps: { logger: Logger }): Provider {
  const log = deps.logger.child({ component: 'provider', provider: opts.name });
  const domain = opts.messageIdDomain ?? domainOf(opts.from);
  const domainSender = addressOf(opts.from);
  const sendTimeoutMs = opts.sendTimeoutMs ?? 25_000;
  const openPool = () => {
    const t = nodemailer.createTransport(
      smtpPoolOptions(opts.url, {
        pool: true,
        maxConnections: opts.maxConnections ?? 5,
        maxMessages: opts.maxMessages ?? 100,
        connectionTimeout: opts.connectionTimeoutMs ?? 10_000,
        greetingTimeout: opts.connectionTimeoutMs ?? 10_000,
        socketTimeout: opts.socketTimeoutMs ?? 30_000,
        getSocket: noDelaySocket(opts.connectionTimeoutMs ?? 10_000),
        // Templates never attach files or fetch URLs: refuse both outright.
        disableFileAccess: true,
        disableUrlAccess: true,
      }),
    );
    t.on('error', (err: Error) => log.warn({ err: err.message }, 'smtp pool error'));
    return t;
  };
  let transport = openPool();
  /** sendMail, or null once the deadline passed (the pool it ran on is then replaced). */
  const sendMail = async (mail: nodemailer.SendMailOptions): Promise<unknown> => {
    const pool = transport;
    let timer: NodeJS.Timeout | undefined;
    const expired = Symbol('expired');
    const deadline = new Promise<typeof expired>((resolve) => {
      timer = setTimeout(() => resolve(expired), sendTimeoutMs);
    });
    const call = pool.sendMail(mail);
    try {
      const r = await Promise.race([call, deadline]);
      if (r !== expired) return r;
    } finally {
      clearTimeout(timer);
    }
    call.catch(() => undefined);
    if (transport === pool) {
      log.warn({ sendTimeoutMs }, 'smtp call outlived its deadline; replacing the connection pool');
      transport = openPool();
      pool.close();
    }
    return null;
  };

  return {
    name: opts.name,
    channel: 'email',
    // The provider's own deadline fires first; the pipeline's is the backstop.
    deadlineMs: sendTimeoutMs + 5_000,
    async send(message: OutgoingMessage): Promise<ProviderResult> {
      const to = message.recipient.email;
      if (!to)
        return {
          status: 'permanent',
          error: 'recipient has no email address',
          suppress: 'invalid_address',
        };
      // One plain address only: a trait like "a@x.com, b@y.com" must not become two recipients.
      if (!SINGLE_ADDRESS.test(to))
        return {
          status: 'permanent',
          error: 'email address is not a single plain address',
          suppress: 'invalid_address',
        };
      const { subject, html, text } = message.content;
      if (!subject || (!html && !text))
        return { status: 'permanent', error: 'rendered email has no subject or body' };
      const headers: Record<string, string> = {
        ...message.headers,
        'X-Lifecycle-Send-Id': message.sendId,
      };
      if (message.category === 'marketing' && !headers['List-Unsubscribe']) {
        return {
          status: 'permanent',
          error: 'marketing email without a List-Unsubscribe header is never sent',
        };
      }
      if (
        headers['List-Unsubscribe'] &&
        /<https:/i.test(headers['List-Unsubscribe']) &&
        !headers['List-Unsubscribe-Post']
      ) {
        headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
      }
      const messageId = messageIdFor(message.sendId, domain);
      try {
        // The message text is built here (mime.ts: quoted-printable parts, never base64 text,
        // which spam filters score worse); nodemailer's composer cost more CPU than the
        // whole SMTP transaction. The envelope is explicit, so nothing is read from headers.
        const raw = buildMime({
          from: opts.from,
          to,
          subject,
          ...(html ? { html } : {}),
          ...(text ? { text } : {}),
          messageId,
          headers,
        });
        const info = (await sendMail({
          envelope: { from: domainSender, to: [to] },
          raw,
        })) as { rejected?: unknown[]; rejectedErrors?: unknown[] } | null;
        if (info === null)
          return {
            status: 'retriable',
            ambiguous: true,
            error: `no answer from the relay within ${sendTimeoutMs} ms`,
          };
        if (info.rejected && info.rejected.length > 0)
          return classifySmtpError(
            info.rejectedErrors?.[0] ?? {
              message: 'recipient rejected',
              responseCode: 550,
              command: 'RCPT TO',
            },
          );
        return { status: 'sent', providerMessageId: messageId };
      } catch (err) {
        const result = classifySmtpError(err);
        log.debug({ sendId: message.sendId, status: result.status }, 'smtp send failed');
        return result;
      }
    },
    ...(opts.lookup
      ? {
          accepted: (message: OutgoingMessage) =>
            opts.lookup!(messageIdFor(message.sendId, domain)),
        }
      : {}),
    async close() {
      transport.close();
    },
  };
}
