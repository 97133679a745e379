// A real SMTP server that accepts every message and keeps it: the raw .eml plus a parsed
// JSON view (Message-ID, from, to, subject, headers, text, html). Tests and the demo point
// the email provider at it and read what users would have received over a small HTTP API.
// A message is answered 250 once its raw bytes and envelope are on disk. Its parsed view is
// built before that answer (`views: 'on-accept'`, the default: the in-process `list()` then
// holds every answered message), or only when someone reads (`'on-read'`, for a sink read
// over HTTP only, as `scripts/stack` runs it: parsing costs several times more than
// accepting, and a load test reads nothing).
//   GET /health, GET /messages[?messageId=&to=&subject=], GET /messages/:id,
//   GET /messages/:id/raw, DELETE /messages, DELETE /messages/:id
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { simpleParser, type AddressObject } from 'mailparser';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { closeSync, ftruncateSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.ts';
import { silentLogger } from './logger.ts';

export interface SmtpSinkOptions {
  /** Interface both servers bind (default 127.0.0.1). */
  host?: string;
  /** SMTP port; 0 picks a free one (read it back from `sink.port` after start). */
  port: number;
  /** Port of the HTTP read API; 0 picks a free one; omit for no HTTP API. */
  httpPort?: number;
  /** Folder where `<id>.eml` and `<id>.json` are kept; messages found there at start are served too. */
  dir: string;
  /** Largest accepted message in bytes (default 25 MB). */
  maxMessageBytes?: number;
  /** When parsed views are built (see the file comment); default `on-accept`. */
  views?: 'on-accept' | 'on-read';
  logger?: Logger;
}

export interface ReceivedMessage {
  /** The sink's own id (file name), sortable by arrival. */
  id: string;
  /** Message-ID header without angle brackets, or null when the message has none. */
  messageId: string | null;
  from: string[];
  to: string[];
  cc: string[];
  subject: string;
  /** Lower-cased header names; values unfolded; repeated headers become arrays. */
  headers: Record<string, string | string[]>;
  text: string;
  html: string | null;
  envelope: { mailFrom: string | null; rcptTo: string[] };
  receivedAt: string;
  size: number;
}

export interface MessageFilter {
  messageId?: string;
  to?: string;
  subject?: string;
}

export interface SmtpSink {
  readonly port: number;
  readonly httpPort: number | null;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** `messages` counts every accepted message, parsed or not yet. */
  health(): { ok: boolean; messages: number };
  /** Messages whose view is built: every answered one, unless `views` is `on-read` (then see `settled`). */
  list(filter?: MessageFilter): ReceivedMessage[];
  get(id: string): ReceivedMessage | undefined;
  /** Builds the views of every message accepted so far. */
  settled(): Promise<void>;
  raw(id: string): Promise<Buffer | undefined>;
  delete(id: string): Promise<boolean>;
  clear(): Promise<void>;
}

const ID_PATTERN = /^[0-9]{13}-[0-9a-f]{12}$/;

/**
 * With views on read: one line per accepted message in this append-only file, opened once,
 * because creating a second file per message cost more CPU than everything else the sink
 * does. Emptied whenever every listed line has its parsed .json.
 */
const JOURNAL = 'accepted.jsonl';

/** What the journal keeps of a message until its parsed view replaces it. */
interface AcceptedRecord {
  id: string;
  envelope: ReceivedMessage['envelope'];
  receivedAt: string;
  size: number;
}

export function stripAngles(messageId: string): string {
  return messageId.trim().replace(/^<(.*)>$/, '$1');
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  if (!a) return [];
  const list = Array.isArray(a) ? a : [a];
  return list.flatMap((o) => o.value.map((v) => v.address ?? '').filter((x) => x !== ''));
}

function headerMap(lines: ReadonlyArray<{ key: string; line: string }>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const { key, line } of lines) {
    const colon = line.indexOf(':');
    const value = (colon >= 0 ? line.slice(colon + 1) : line).replace(/\r?\n[ \t]+/g, ' ').trim();
    const k = key.toLowerCase();
    const prev = out[k];
    if (prev === undefined) out[k] = value;
    else out[k] = Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return out;
}

/** Parses raw RFC 5322 bytes into the JSON view the sink stores. */
export async function parseMessage(
  raw: Buffer,
  meta: { id: string; envelope: ReceivedMessage['envelope']; receivedAt: Date },
): Promise<ReceivedMessage> {
  const parsed = await simpleParser(raw, { skipImageLinks: true });
  return {
    id: meta.id,
    messageId: parsed.messageId ? stripAngles(parsed.messageId) : null,
    from: addresses(parsed.from),
    to: addresses(parsed.to),
    cc: addresses(parsed.cc),
    subject: parsed.subject ?? '',
    headers: headerMap(parsed.headerLines),
    text: parsed.text ?? '',
    html: typeof parsed.html === 'string' ? parsed.html : null,
    envelope: meta.envelope,
    receivedAt: meta.receivedAt.toISOString(),
    size: raw.length,
  };
}

export function matches(m: ReceivedMessage, f: MessageFilter): boolean {
  if (f.messageId !== undefined && m.messageId !== stripAngles(f.messageId)) return false;
  if (f.to !== undefined) {
    const want = f.to.toLowerCase();
    const all = [...m.to, ...m.cc, ...m.envelope.rcptTo].map((x) => x.toLowerCase());
    if (!all.includes(want)) return false;
  }
  if (f.subject !== undefined && !m.subject.includes(f.subject)) return false;
  return true;
}

export function createSmtpSink(options: SmtpSinkOptions): SmtpSink {
  const host = options.host ?? '127.0.0.1';
  const log = (options.logger ?? silentLogger()).child({ component: 'smtp-sink' });
  const maxBytes = options.maxMessageBytes ?? 25 * 1024 * 1024;
  const messages = new Map<string, ReceivedMessage>();
  let smtpPort = options.port;
  let httpPort: number | null = options.httpPort ?? null;
  let smtp: SMTPServer | undefined;
  let http: Server | undefined;

  const newId = () => `${Date.now()}-${randomBytes(6).toString('hex')}`;

  const viewsOnRead = options.views === 'on-read';
  // Accepted messages whose view is not built yet, in arrival order.
  const pending = new Map<string, AcceptedRecord>();
  let parsing: Promise<void> | undefined;
  let journal: number | undefined;
  let journalLines = 0;

  async function buildView(rec: AcceptedRecord, raw?: Buffer): Promise<void> {
    const bytes = raw ?? (await readFile(join(options.dir, `${rec.id}.eml`)));
    const message = await parseMessage(bytes, {
      id: rec.id,
      envelope: rec.envelope,
      receivedAt: new Date(rec.receivedAt),
    });
    writeFileSync(join(options.dir, `${rec.id}.json`), JSON.stringify(message));
    messages.set(rec.id, message);
  }

  async function parsePending(): Promise<void> {
    for (const rec of [...pending.values()]) {
      try {
        await buildView(rec);
      } catch (err) {
        log.warn({ id: rec.id, err }, 'stored message cannot be parsed; only its raw bytes are kept');
      } finally {
        pending.delete(rec.id);
      }
    }
  }

  async function settled(): Promise<void> {
    while (pending.size > 0) {
      parsing ??= parsePending().finally(() => {
        parsing = undefined;
      });
      await parsing;
    }
    // Nothing pending: every journal line has its .json now (same tick as the check).
    if (journal !== undefined && journalLines > 0) {
      ftruncateSync(journal, 0);
      journalLines = 0;
    }
  }

  async function receive(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    if (stream.sizeExceeded) throw Object.assign(new Error('message exceeds the size limit'), { responseCode: 552 });
    const raw = Buffer.concat(chunks);
    const rec: AcceptedRecord = {
      id: newId(),
      envelope: {
        mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
        rcptTo: session.envelope.rcptTo.map((r) => r.address),
      },
      receivedAt: new Date().toISOString(),
      size: raw.length,
    };
    // Synchronous writes of a few KB to the page cache cost far less CPU than the promise
    // API's trips through the thread pool, and the sink has nothing else to do meanwhile.
    writeFileSync(join(options.dir, `${rec.id}.eml`), raw);
    if (journal !== undefined) {
      // The envelope is not in the raw bytes: keep it until the view replaces it.
      writeSync(journal, `${JSON.stringify(rec)}\n`);
      journalLines++;
      pending.set(rec.id, rec);
    } else {
      try {
        await buildView(rec, raw);
      } catch (err) {
        rmSync(join(options.dir, `${rec.id}.eml`), { force: true });
        throw err;
      }
    }
    log.debug({ id: rec.id, size: raw.length, recipients: rec.envelope.rcptTo.length }, 'message received');
    return rec.id;
  }

  async function loadExisting(): Promise<void> {
    const files = (await readdir(options.dir)).sort();
    for (const file of files) {
      if (!file.endsWith('.json') || !ID_PATTERN.test(file.slice(0, -5))) continue;
      try {
        const m = JSON.parse(await readFile(join(options.dir, file), 'utf8')) as ReceivedMessage;
        messages.set(m.id, m);
      } catch (err) {
        log.warn({ file, err }, 'skipping unreadable stored message');
      }
    }
    // Accepted (answered 250) but not parsed before the last stop.
    const emls = new Set(files.filter((f) => f.endsWith('.eml')).map((f) => f.slice(0, -4)));
    const lines = files.includes(JOURNAL) ? (await readFile(join(options.dir, JOURNAL), 'utf8')).split('\n') : [];
    for (const line of lines) {
      if (!line) continue;
      try {
        const rec = JSON.parse(line) as AcceptedRecord;
        if (!messages.has(rec.id) && emls.has(rec.id)) pending.set(rec.id, rec);
      } catch {
        log.warn({ file: JOURNAL }, 'skipping a torn journal line');
      }
    }
    journalLines = lines.length;
    if (!viewsOnRead) {
      await settled();
      if (lines.length > 0) await rm(join(options.dir, JOURNAL), { force: true });
    }
  }

  function list(filter: MessageFilter = {}): ReceivedMessage[] {
    return [...messages.values()].filter((m) => matches(m, filter));
  }

  async function remove(id: string): Promise<boolean> {
    await settled();
    if (!messages.delete(id)) return false;
    await rm(join(options.dir, `${id}.eml`), { force: true });
    await rm(join(options.dir, `${id}.json`), { force: true });
    return true;
  }

  async function clear(): Promise<void> {
    await settled();
    for (const id of [...messages.keys()]) await remove(id);
    if (journal !== undefined) ftruncateSync(journal, 0);
    journalLines = 0;
  }

  async function raw(id: string): Promise<Buffer | undefined> {
    await settled();
    if (!ID_PATTERN.test(id) || !messages.has(id)) return undefined;
    return readFile(join(options.dir, `${id}.eml`));
  }

  function send(res: ServerResponse, status: number, body?: unknown, type = 'application/json'): void {
    if (body === undefined) {
      res.writeHead(status).end();
      return;
    }
    const payload = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': type, 'content-length': payload.length }).end(payload);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sink');
    const parts = url.pathname.split('/').filter(Boolean);
    if (req.method === 'GET' && url.pathname === '/health') return send(res, 200, health());
    if (parts[0] !== 'messages') return send(res, 404, { code: 'LC_ERR_NOT_FOUND', message: `no route ${req.method} ${url.pathname}` });
    // What a client that got a 250 reads next includes that message.
    await settled();
    const id = parts[1];
    if (req.method === 'GET' && id === undefined) {
      const filter: MessageFilter = {};
      for (const key of ['messageId', 'to', 'subject'] as const) {
        const v = url.searchParams.get(key);
        if (v !== null) filter[key] = v;
      }
      return send(res, 200, { messages: list(filter) });
    }
    if (req.method === 'DELETE' && id === undefined) {
      await clear();
      return send(res, 204);
    }
    if (id !== undefined && req.method === 'GET' && parts[2] === 'raw') {
      const bytes = await raw(id);
      return bytes ? send(res, 200, bytes, 'message/rfc822') : send(res, 404, { code: 'LC_ERR_NOT_FOUND', message: `no message ${id}` });
    }
    if (id !== undefined && req.method === 'GET' && parts.length === 2) {
      const m = messages.get(id);
      return m ? send(res, 200, m) : send(res, 404, { code: 'LC_ERR_NOT_FOUND', message: `no message ${id}` });
    }
    if (id !== undefined && req.method === 'DELETE' && parts.length === 2) {
      return (await remove(id)) ? send(res, 204) : send(res, 404, { code: 'LC_ERR_NOT_FOUND', message: `no message ${id}` });
    }
    return send(res, 405, { code: 'LC_ERR_BAD_REQUEST', message: `${req.method} not allowed on ${url.pathname}` });
  }

  function health() {
    return { ok: smtp !== undefined, messages: messages.size + pending.size };
  }

  async function start(): Promise<void> {
    if (smtp) return;
    await mkdir(options.dir, { recursive: true });
    await loadExisting();
    if (viewsOnRead) journal = openSync(join(options.dir, JOURNAL), 'a');
    const server = new SMTPServer({
      name: 'lifecycle-smtp-sink',
      banner: 'lifecycle SMTP sink: every message is kept, none is delivered',
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      size: maxBytes,
      logger: false,
      // Pooled clients keep idle sessions open; nothing they have been answered is lost by
      // closing those after a short grace instead of smtp-server's 30 s.
      closeTimeout: 1_000,
      // Any credentials are accepted: the sink stands in for a relay whose password we do not check.
      onAuth: (auth, _session, cb) => cb(null, { user: auth.username ?? 'anonymous' }),
      onData: (stream, session, cb) => {
        receive(stream, session).then(
          (id) => cb(null, `queued as ${id}`),
          (err: unknown) => {
            log.warn({ err }, 'message rejected');
            cb(err instanceof Error ? err : new Error(String(err)));
          },
        );
      },
    });
    server.on('error', (err) => log.warn({ err }, 'smtp connection error'));
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(options.port, host, () => {
        server.server.off('error', reject);
        resolve();
      });
    });
    smtpPort = (server.server.address() as AddressInfo).port;
    smtp = server;
    if (options.httpPort !== undefined) {
      const h = createServer((req, res) => {
        handle(req, res).catch((err: unknown) => {
          log.error({ err }, 'http request failed');
          if (!res.headersSent) send(res, 500, { code: 'LC_ERR_INTERNAL', message: 'internal error' });
        });
      });
      await new Promise<void>((resolve, reject) => {
        h.once('error', reject);
        h.listen(options.httpPort, host, () => {
          h.off('error', reject);
          resolve();
        });
      });
      httpPort = (h.address() as AddressInfo).port;
      http = h;
    }
    log.info({ host, port: smtpPort, httpPort }, 'smtp sink listening');
  }

  async function stop(): Promise<void> {
    const s = smtp;
    const h = http;
    smtp = undefined;
    http = undefined;
    if (h) {
      h.closeAllConnections();
      await new Promise<void>((resolve) => h.close(() => resolve()));
    }
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    await parsing;
    if (journal !== undefined) closeSync(journal);
    journal = undefined;
  }

  return {
    get port() {
      return smtpPort;
    },
    get httpPort() {
      return httpPort;
    },
    start,
    stop,
    health,
    list,
    get: (id) => messages.get(id),
    settled,
    raw,
    delete: remove,
    clear,
  };
}
