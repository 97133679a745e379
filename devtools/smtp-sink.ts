// A real SMTP server that accepts every message and keeps it: the raw .eml plus a parsed
// JSON view (Message-ID, from, to, subject, headers, text, html). Tests and the demo point
// the email provider at it and read what users would have received over a small HTTP API.
// A message is answered 250 once its raw bytes and envelope are on disk. Its parsed view is
// built before that answer (`views: 'on-accept'`, the default: the in-process `list()` then
// holds every answered message), or only when someone reads (`'on-read'`, for a sink read
// over HTTP only, as `scripts/stack` runs it: parsing costs several times more than
// accepting, and a load test reads nothing). With views on read, accepting is one append
// to the already open accept log (see ACCEPT_LOG) and creates no file: creating a file per
// message cost more CPU than the rest of the sink together, and made it erratic under
// concurrency; the .eml and .json files are written when the views are built.
//   GET /health, GET /messages[?messageId=&to=&subject=], GET /messages/:id,
//   GET /messages/:id/raw, DELETE /messages, DELETE /messages/:id
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { simpleParser, type AddressObject } from 'mailparser';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { ErrorCodes } from '../platform/errors.ts';
import { SECURITY_HEADERS } from '../platform/security-headers.ts';
import type { Logger } from '../platform/logger.ts';
import { silentLogger } from '../platform/logger.ts';

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
 * With views on read: every accepted message is one frame appended to this file, which is
 * opened once: a JSON header line (the AcceptedRecord plus `bytes`, the length of what
 * follows), the raw message bytes as received, and a newline. One write per message, no
 * file created on the accept path. Emptied whenever every frame in it has its .eml and .json.
 * Lines without `bytes` are records written by earlier versions, whose raw bytes are in
 * `<id>.eml`; they are still read at start.
 */
const ACCEPT_LOG = 'accepted.jsonl';

/** What the accept log keeps of a message until its parsed view replaces it. */
interface AcceptedRecord {
  id: string;
  envelope: ReceivedMessage['envelope'];
  receivedAt: string;
  size: number;
}

/** An accepted message whose view is not built yet, and where its raw bytes are. */
interface PendingMessage {
  rec: AcceptedRecord;
  /** Position of the raw bytes in the accept log; absent: they are in `<id>.eml` already. */
  rawAt?: number;
}

const NEWLINE = Buffer.from('\n');

export function stripAngles(messageId: string): string {
  return messageId.trim().replace(/^<(.*)>$/, '$1');
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  if (!a) return [];
  const list = Array.isArray(a) ? a : [a];
  return list.flatMap((o) => o.value.map((v) => v.address ?? '').filter((x) => x !== ''));
}

function headerMap(
  lines: ReadonlyArray<{ key: string; line: string }>,
): Record<string, string | string[]> {
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
  const logPath = join(options.dir, ACCEPT_LOG);
  // Accepted messages whose view is not built yet, in arrival order.
  const pending = new Map<string, PendingMessage>();
  let parsing: Promise<void> | undefined;
  // The accept log, open while views are on read (and at start while recovering from it).
  let acceptLog: number | undefined;
  // Its length: where the next frame lands. Only this process appends to it.
  let logBytes = 0;

  /** The raw bytes of a pending message, written to `<id>.eml` if they are still in the accept log. */
  function storeRaw(p: PendingMessage): Buffer | undefined {
    if (p.rawAt === undefined) return undefined;
    if (acceptLog === undefined)
      throw new Error(`the sink is stopped: start it again to read ${p.rec.id} from ${logPath}`);
    const bytes = Buffer.allocUnsafe(p.rec.size);
    const n = readSync(acceptLog, bytes, 0, bytes.length, p.rawAt);
    if (n !== bytes.length)
      throw new Error(`accept log ${logPath} ends inside message ${p.rec.id}`);
    writeFileSync(join(options.dir, `${p.rec.id}.eml`), bytes);
    return bytes;
  }

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
    for (const p of [...pending.values()]) {
      let raw: Buffer | undefined;
      try {
        raw = storeRaw(p);
      } catch (err) {
        // Not dropped from pending: the accept log, and so the message, stay until this is fixed.
        log.error(
          { id: p.rec.id, err },
          'cannot copy an accepted message from the accept log to its .eml file',
        );
        throw err;
      }
      try {
        await buildView(p.rec, raw);
      } catch (err) {
        log.warn(
          { id: p.rec.id, err },
          'stored message cannot be parsed; only its raw bytes are kept',
        );
      } finally {
        pending.delete(p.rec.id);
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
    // Nothing pending: every frame has its .eml and .json now (same tick as the check).
    if (acceptLog !== undefined && logBytes > 0) {
      ftruncateSync(acceptLog, 0);
      logBytes = 0;
    }
  }

  /** Appends one frame (header line, raw bytes, newline) with a single write. */
  function appendToLog(rec: AcceptedRecord, chunks: Buffer[]): number {
    const fd = acceptLog!;
    const header = Buffer.from(`${JSON.stringify({ ...rec, bytes: rec.size })}\n`);
    const frame = Buffer.concat([header, ...chunks, NEWLINE], header.length + rec.size + 1);
    const at = logBytes;
    let written = 0;
    try {
      written = writeSync(fd, frame);
    } finally {
      // A short or failed write would leave a torn frame in front of the next ones.
      if (written !== frame.length) ftruncateSync(fd, at);
    }
    if (written !== frame.length)
      throw new Error(`short write to ${logPath} (${written} of ${frame.length} bytes)`);
    logBytes = at + frame.length;
    return at + header.length;
  }

  async function receive(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
  ): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    if (stream.sizeExceeded)
      throw Object.assign(new Error('message exceeds the size limit'), { responseCode: 552 });
    let size = 0;
    for (const c of chunks) size += c.length;
    const rec: AcceptedRecord = {
      id: newId(),
      envelope: {
        mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
        rcptTo: session.envelope.rcptTo.map((r) => r.address),
      },
      receivedAt: new Date().toISOString(),
      size,
    };
    // Synchronous writes of a few KB to the page cache cost far less CPU than the promise
    // API's trips through the thread pool, and the sink has nothing else to do meanwhile.
    if (viewsOnRead) {
      // The envelope is not in the raw bytes: the log keeps both until the view replaces them.
      pending.set(rec.id, { rec, rawAt: appendToLog(rec, chunks) });
    } else {
      const raw = Buffer.concat(chunks, size);
      writeFileSync(join(options.dir, `${rec.id}.eml`), raw);
      try {
        await buildView(rec, raw);
      } catch (err) {
        rmSync(join(options.dir, `${rec.id}.eml`), { force: true });
        throw err;
      }
    }
    log.debug({ id: rec.id, size, recipients: rec.envelope.rcptTo.length }, 'message received');
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
    if (acceptLog !== undefined) {
      const emls = new Set(files.filter((f) => f.endsWith('.eml')).map((f) => f.slice(0, -4)));
      recoverAcceptLog(acceptLog, emls);
    }
    if (!viewsOnRead) {
      await settled();
      if (acceptLog !== undefined) {
        closeSync(acceptLog);
        acceptLog = undefined;
        await rm(logPath, { force: true });
      }
    }
  }

  /**
   * Reads the accept log's frames into `pending`, and cuts off a torn last frame (the process
   * stopped inside a write) so that new frames follow the last whole one.
   */
  function recoverAcceptLog(fd: number, emls: Set<string>): void {
    const size = fstatSync(fd).size;
    let at = 0;
    let torn: string | undefined;
    let window = Buffer.allocUnsafe(64 * 1024);
    while (at < size && torn === undefined) {
      // The header line, read in a window that grows until it holds the newline.
      let n = readSync(fd, window, 0, window.length, at);
      let eol = window.subarray(0, n).indexOf(0x0a);
      while (eol < 0 && at + n < size) {
        window = Buffer.allocUnsafe(window.length * 2);
        n = readSync(fd, window, 0, window.length, at);
        eol = window.subarray(0, n).indexOf(0x0a);
      }
      if (eol < 0) {
        torn = 'header line without its end';
        break;
      }
      let head: (AcceptedRecord & { bytes?: number }) | undefined;
      try {
        head = JSON.parse(window.toString('utf8', 0, eol)) as AcceptedRecord & { bytes?: number };
      } catch {
        torn = 'header line that is not JSON';
        break;
      }
      if (typeof head?.id !== 'string' || !ID_PATTERN.test(head.id)) {
        torn = 'header line without a message id';
        break;
      }
      const rawAt = at + eol + 1;
      if (head.bytes === undefined) {
        // A record from an earlier version: its raw bytes were written to `<id>.eml`.
        if (!messages.has(head.id) && emls.has(head.id)) pending.set(head.id, { rec: head });
        at = rawAt;
        continue;
      }
      const bytes = head.bytes;
      const end = rawAt + bytes;
      if (!Number.isSafeInteger(bytes) || bytes < 0 || end + 1 > size) {
        torn = 'message cut short';
        break;
      }
      const last = Buffer.allocUnsafe(1);
      if (readSync(fd, last, 0, 1, end) !== 1 || last[0] !== 0x0a) {
        torn = 'message without its closing newline';
        break;
      }
      const rec: AcceptedRecord = {
        id: head.id,
        envelope: head.envelope,
        receivedAt: head.receivedAt,
        size: bytes,
      };
      if (!messages.has(rec.id)) pending.set(rec.id, { rec, rawAt });
      at = end + 1;
    }
    if (torn !== undefined) {
      log.warn(
        { file: ACCEPT_LOG, at, droppedBytes: size - at, reason: torn },
        'dropping the torn end of the accept log (the sink stopped inside a write); the messages before it are kept',
      );
      ftruncateSync(fd, at);
    }
    logBytes = at;
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
  }

  async function raw(id: string): Promise<Buffer | undefined> {
    await settled();
    if (!ID_PATTERN.test(id) || !messages.has(id)) return undefined;
    return readFile(join(options.dir, `${id}.eml`));
  }

  function send(
    res: ServerResponse,
    status: number,
    body?: unknown,
    type = 'application/json',
  ): void {
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
    if (parts[0] !== 'messages')
      return send(res, 404, {
        code: ErrorCodes.NotFound,
        message: `no route ${req.method} ${url.pathname}`,
      });
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
      return bytes
        ? send(res, 200, bytes, 'message/rfc822')
        : send(res, 404, { code: ErrorCodes.NotFound, message: `no message ${id}` });
    }
    if (id !== undefined && req.method === 'GET' && parts.length === 2) {
      const m = messages.get(id);
      return m
        ? send(res, 200, m)
        : send(res, 404, { code: ErrorCodes.NotFound, message: `no message ${id}` });
    }
    if (id !== undefined && req.method === 'DELETE' && parts.length === 2) {
      return (await remove(id))
        ? send(res, 204)
        : send(res, 404, { code: ErrorCodes.NotFound, message: `no message ${id}` });
    }
    return send(res, 405, {
      code: ErrorCodes.BadRequest,
      message: `${req.method} not allowed on ${url.pathname}`,
    });
  }

  function health() {
    return { ok: smtp !== undefined, messages: messages.size + pending.size };
  }

  async function start(): Promise<void> {
    if (smtp) return;
    await mkdir(options.dir, { recursive: true });
    // Read positionally, appended to only (O_APPEND), and kept open: see ACCEPT_LOG.
    if (viewsOnRead || existsSync(logPath)) acceptLog = openSync(logPath, 'a+');
    try {
      await loadExisting();
    } catch (err) {
      if (acceptLog !== undefined) closeSync(acceptLog);
      acceptLog = undefined;
      throw err;
    }
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
        // Caught mail is untrusted HTML: whatever shows it must not run or load from it.
        for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
        handle(req, res).catch((err: unknown) => {
          log.error({ err }, 'http request failed');
          if (!res.headersSent)
            send(res, 500, { code: ErrorCodes.Internal, message: 'internal error' });
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
    // A failed build keeps its messages in the accept log for the next start; not a reason to stay open.
    await parsing?.catch(() => undefined);
    if (acceptLog !== undefined) closeSync(acceptLog);
    acceptLog = undefined;
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
