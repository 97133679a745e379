// The RFC 5322 / MIME text of a lifecycle email: one plain recipient, a subject, a text and
// an HTML part (multipart/alternative, both UTF-8 quoted-printable), and a few extra headers.
// nodemailer's composer builds the same thing through a chain of streams that costs several
// times more CPU than the SMTP transaction itself; this builds it as one string with
// nodemailer's own encoders (encoded words, header folding, quoted-printable) and the
// transport sends the finished bytes.
import { randomBytes } from 'node:crypto';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import * as mimeFuncsModule from 'nodemailer/lib/mime-funcs/index.js';
import * as qpModule from 'nodemailer/lib/qp/index.js';

// CommonJS modules whose exports Node cannot list statically: take them from the default.
type WithDefault<T> = T & { default?: T };
const mimeFuncs =
  (mimeFuncsModule as WithDefault<typeof mimeFuncsModule>).default ?? mimeFuncsModule;
const qp = (qpModule as WithDefault<typeof qpModule>).default ?? qpModule;
// mime-funcs' functions call each other through `this`.
const isPlainText = (v: string) => mimeFuncs.isPlainText(v);
const encodeWord = (v: string) => mimeFuncs.encodeWord(v, 'Q', 52);
const encodeWords = (v: string) => mimeFuncs.encodeWords(v, 'Q', 52);
const foldLines = (v: string) => mimeFuncs.foldLines(v, 76);
const qpBodyEncode = (v: string) => qp.wrap(qp.encode(v), 76);

export interface MimeMessage {
  /** `Name <address>` or a bare address. */
  from: string;
  /** One plain address (the provider has checked it). */
  to: string;
  subject: string;
  text?: string;
  html?: string;
  /** With angle brackets. */
  messageId: string;
  /** Extra headers (List-Unsubscribe, X-Lifecycle-Send-Id ...); ASCII or encoded here. */
  headers?: Record<string, string>;
  date?: Date;
}

/** Header values never carry line breaks: a CR or LF in data must not start a new header. */
const oneLine = (value: string) => value.replace(/\r?\n|\r/g, ' ');

const encodeValue = (value: string) => (isPlainText(value) ? value : encodeWords(value));

/** `Name <address>` with the name quoted or encoded as a MIME word when it needs it. */
export function formatAddress(header: string): string {
  const parsed = addressparser(oneLine(header), { flatten: true });
  return parsed
    .map(({ name, address }) => {
      if (!name) return address;
      const shown = isPlainText(name)
        ? /^[\w ']*$/.test(name)
          ? name
          : `"${name.replace(/([\\"])/g, '\\$1')}"`
        : encodeWord(name);
      return `${shown} <${address}>`;
    })
    .join(', ');
}

function header(key: string, value: string): string {
  return foldLines(`${key}: ${value}`);
}

/** A text body as UTF-8 quoted-printable with CRLF line ends and lines of at most 76. */
function qpBody(body: string): string {
  return qpBodyEncode(body.replace(/\r?\n|\r/g, '\r\n'));
}

function part(type: 'plain' | 'html', body: string): string {
  return (
    `Content-Type: text/${type}; charset=utf-8\r\n` +
    `Content-Transfer-Encoding: quoted-printable\r\n\r\n${qpBody(body)}`
  );
}

const BOUNDARY_PREFIX = randomBytes(6).toString('hex');
let boundaries = 0;

export function buildMime(message: MimeMessage): Buffer {
  const { text, html } = message;
  if (text === undefined && html === undefined)
    throw new Error('an email needs a text or an HTML body');
  const lines = [
    header('From', formatAddress(message.from)),
    header('To', formatAddress(message.to)),
    header('Subject', encodeValue(oneLine(message.subject))),
    header('Message-ID', oneLine(message.messageId)),
    header('Date', (message.date ?? new Date()).toUTCString().replace(/GMT/, '+0000')),
  ];
  for (const [key, value] of Object.entries(message.headers ?? {}))
    lines.push(
      header(oneLine(key).replace(/[^\x21-\x39\x3b-\x7e]/g, ''), encodeValue(oneLine(value))),
    );
  lines.push('MIME-Version: 1.0');
  let body: string;
  if (text !== undefined && html !== undefined) {
    // "=_" never occurs in quoted-printable text ("=" is always escaped there), so the
    // boundary cannot collide with a body and needs no fresh randomness per message.
    const boundary = `=_lc_${BOUNDARY_PREFIX}_${(boundaries++).toString(36)}`;
    lines.push(`Content-Type: multipart/alternative; boundary="${boundary}"`);
    body =
      `\r\n--${boundary}\r\n${part('plain', text)}\r\n` +
      `--${boundary}\r\n${part('html', html)}\r\n` +
      `--${boundary}--\r\n`;
    return Buffer.from(`${lines.join('\r\n')}\r\n${body}`);
  }
  body = part(text !== undefined ? 'plain' : 'html', (text ?? html)!);
  return Buffer.from(`${lines.join('\r\n')}\r\n${body}`);
}
