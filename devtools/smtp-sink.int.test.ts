// The sink module itself, in-process on free ports: SMTP in, HTTP out, kept on disk across
// a restart, and cleared on request.
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpSink, type ReceivedMessage, type SmtpSink } from './smtp-sink.ts';
import { SECURITY_HEADERS } from '../platform/security-headers.ts';

describe('createSmtpSink', () => {
  let dir: string;
  let sink: SmtpSink;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lc-sink-'));
    sink = createSmtpSink({ port: 0, httpPort: 0, dir });
    await sink.start();
  });
  afterAll(async () => {
    await sink.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const api = (path: string, init?: RequestInit) =>
    fetch(`http://127.0.0.1:${sink.httpPort}${path}`, init);
  it('answers with the security headers: caught mail is untrusted HTML', async () => {
    for (const path of ['/messages', '/nothing']) {
      const res = await api(path);
      for (const [name, value] of Object.entries(SECURITY_HEADERS))
        expect(res.headers.get(name), `${path} ${name}`).toBe(value);
    }
  });

  const send = async (n: number, auth = false) => {
    const t = nodemailer.createTransport({
      host: '127.0.0.1',
      port: sink.port,
      secure: false,
      ...(auth ? { auth: { user: 'relay', pass: 'secret' } } : {}),
    });
    try {
      for (let i = 0; i < n; i++) {
        await t.sendMail({
          from: 'a@example.com',
          to: [`b${i}@example.com`],
          cc: 'c@example.com',
          subject: `hello ${i}`,
          text: `body ${i}`,
          messageId: `<m${i}@x>`,
        });
      }
    } finally {
      t.close();
    }
  };

  it('stores every message as .eml and .json and lists them over HTTP', async () => {
    await send(3, true);
    const res = await api('/messages');
    expect(res.status).toBe(200);
    const { messages } = (await res.json()) as { messages: ReceivedMessage[] };
    expect(messages.map((m) => m.subject)).toEqual(['hello 0', 'hello 1', 'hello 2']);
    expect(messages[1]!.cc).toEqual(['c@example.com']);
    expect(messages[1]!.envelope.rcptTo.sort()).toEqual(['b1@example.com', 'c@example.com']);
    const files = (await readdir(dir)).sort();
    expect(files.filter((f) => f.endsWith('.eml'))).toHaveLength(3);
    expect(files.filter((f) => f.endsWith('.json'))).toHaveLength(3);

    const one = (await (await api('/messages?messageId=%3Cm1%40x%3E')).json()) as {
      messages: ReceivedMessage[];
    };
    expect(one.messages.map((m) => m.messageId)).toEqual(['m1@x']);
    const byId = (await (await api(`/messages/${one.messages[0]!.id}`)).json()) as ReceivedMessage;
    expect(byId.text.trim()).toBe('body 1');
    const raw = await (await api(`/messages/${byId.id}/raw`)).text();
    expect(raw).toMatch(/^From: a@example.com/m);
    expect((await api('/messages/nope')).status).toBe(404);
    expect((await api('/elsewhere')).status).toBe(404);
  });

  it('serves stored messages again after a restart, and clears them', async () => {
    await sink.stop();
    sink = createSmtpSink({ port: 0, httpPort: 0, dir });
    await sink.start();
    expect(sink.list()).toHaveLength(3);
    expect(sink.list({ to: 'B2@example.com' }).map((m) => m.subject)).toEqual(['hello 2']);
    const del = await api('/messages', { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(sink.list()).toHaveLength(0);
    expect(await readdir(dir)).toEqual([]);
  });

  it('lists a message as soon as its sender has the 250', async () => {
    await sink.clear();
    const t = nodemailer.createTransport({
      host: '127.0.0.1',
      port: sink.port,
      secure: false,
      pool: true,
      maxConnections: 4,
    });
    try {
      await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          await t.sendMail({
            from: 'a@example.com',
            to: 'z@example.com',
            subject: `now ${i}`,
            text: 'x',
            messageId: `<now${i}@x>`,
          });
          expect(sink.list({ messageId: `now${i}@x` }), `now${i}`).toHaveLength(1);
        }),
      );
    } finally {
      t.close();
    }
    expect(sink.health().messages).toBe(40);
    await sink.clear();
  });

  it('parses at start a message that was answered 250 but not parsed before a stop', async () => {
    const raw = Buffer.from(
      'From: a@example.com\r\nTo: late@example.com\r\nSubject: late\r\nMessage-ID: <late@x>\r\n\r\nbody\r\n',
    );
    const id = '1700000000000-00000000abcd';
    await writeFile(join(dir, `${id}.eml`), raw);
    // As a sink with views on read leaves it: the raw bytes and a journal line with the envelope.
    await writeFile(
      join(dir, 'accepted.jsonl'),
      `${JSON.stringify({ id, envelope: { mailFrom: 'a@example.com', rcptTo: ['hidden@example.com'] }, receivedAt: new Date(0).toISOString(), size: raw.length })}\n`,
    );
    await sink.stop();
    sink = createSmtpSink({ port: 0, httpPort: 0, dir });
    await sink.start();
    const [m] = sink.list({ messageId: 'late@x' });
    expect(m).toMatchObject({
      id,
      subject: 'late',
      to: ['late@example.com'],
      envelope: { rcptTo: ['hidden@example.com'] },
    });
    expect(m!.text.trim()).toBe('body');
    expect(JSON.parse(await readFile(join(dir, `${id}.json`), 'utf8'))).toMatchObject({
      messageId: 'late@x',
    });
    await sink.clear();
    expect(await readdir(dir)).toEqual([]);
  });

  it('with views on read, answers before parsing and still serves every answered message over HTTP, also after a restart', async () => {
    const lazyDir = await mkdtemp(join(tmpdir(), 'lc-sink-lazy-'));
    let lazy = createSmtpSink({ port: 0, httpPort: 0, dir: lazyDir, views: 'on-read' });
    await lazy.start();
    try {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: lazy.port, secure: false });
      for (let i = 0; i < 3; i++)
        await t.sendMail({
          from: 'a@example.com',
          to: `l${i}@example.com`,
          bcc: 'hidden@example.com',
          subject: `lazy ${i}`,
          text: `body ${i}`,
          messageId: `<lazy${i}@x>`,
        });
      t.close();
      expect(lazy.health().messages).toBe(3);
      // Raw bytes and envelope are on disk before any parse, in the accept log alone.
      expect(await readdir(lazyDir)).toEqual(['accepted.jsonl']);

      await lazy.stop();
      lazy = createSmtpSink({ port: 0, httpPort: 0, dir: lazyDir, views: 'on-read' });
      await lazy.start();
      const res = await fetch(`http://127.0.0.1:${lazy.httpPort}/messages?to=hidden@example.com`);
      const { messages } = (await res.json()) as { messages: ReceivedMessage[] };
      expect(messages.map((m) => [m.messageId, m.subject, m.text.trim()])).toEqual([
        ['lazy0@x', 'lazy 0', 'body 0'],
        ['lazy1@x', 'lazy 1', 'body 1'],
        ['lazy2@x', 'lazy 2', 'body 2'],
      ]);
      expect(
        JSON.parse(await readFile(join(lazyDir, `${messages[0]!.id}.json`), 'utf8')),
      ).toMatchObject({ messageId: 'lazy0@x' });
      // Every line has its view now: the journal is emptied, and new messages still land.
      expect(await readFile(join(lazyDir, 'accepted.jsonl'), 'utf8')).toBe('');
      const t2 = nodemailer.createTransport({ host: '127.0.0.1', port: lazy.port, secure: false });
      await t2.sendMail({
        from: 'a@example.com',
        to: 'l3@example.com',
        subject: 'lazy 3',
        text: 'body 3',
        messageId: '<lazy3@x>',
      });
      t2.close();
      const again = (await (
        await fetch(`http://127.0.0.1:${lazy.httpPort}/messages?messageId=lazy3@x`)
      ).json()) as { messages: ReceivedMessage[] };
      expect(again.messages.map((m) => m.subject)).toEqual(['lazy 3']);
    } finally {
      await lazy.stop();
      await rm(lazyDir, { recursive: true, force: true });
    }
  });

  describe('with views on read, the accept log', () => {
    // Raw bytes exactly as a client sends them: a leading dot (dot-stuffed on the wire),
    // 8-bit UTF-8, and, for one of them, a body larger than one socket read.
    const rawMessage = (i: number, big = false) =>
      Buffer.from(
        [
          'From: a@example.com',
          `To: r${i}@example.com`,
          `Subject: log ${i}`,
          `Message-ID: <log${i}@x>`,
          'MIME-Version: 1.0',
          'Content-Type: text/plain; charset=utf-8',
          'Content-Transfer-Encoding: 8bit',
          '',
          `Grüße ${i}`,
          '.a line that starts with a dot',
          ...(big ? Array.from({ length: 4000 }, (_, k) => `line ${k} ${'x'.repeat(60)}`) : []),
          '',
        ].join('\r\n'),
      );
    const sent = [rawMessage(0), rawMessage(1, true), rawMessage(2), rawMessage(3)];
    let logDir: string;
    let logSink: SmtpSink | undefined;

    beforeEach(async () => {
      logDir = await mkdtemp(join(tmpdir(), 'lc-sink-log-'));
    });
    afterEach(async () => {
      await logSink?.stop();
      logSink = undefined;
      await rm(logDir, { recursive: true, force: true });
    });

    const startOnRead = async (views: 'on-read' | 'on-accept' = 'on-read') => {
      logSink = createSmtpSink({ port: 0, httpPort: 0, dir: logDir, views });
      await logSink.start();
      return logSink;
    };
    /** Sends each raw message as is; returns the sink ids from the 250 answers. */
    const sendRaw = async (s: SmtpSink, messages: Buffer[], from = 0): Promise<string[]> => {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: s.port, secure: false });
      try {
        const ids: string[] = [];
        for (const [k, raw] of messages.entries()) {
          const info = await t.sendMail({
            envelope: {
              from: 'bounce@example.com',
              to: [`r${from + k}@example.com`, 'hidden@example.com'],
            },
            raw,
          });
          ids.push(/queued as (\S+)/.exec(info.response)![1]!);
        }
        return ids;
      } finally {
        t.close();
      }
    };
    const http = async (s: SmtpSink, path: string, init?: RequestInit) =>
      fetch(`http://127.0.0.1:${s.httpPort}${path}`, init);
    const listed = async (s: SmtpSink) =>
      ((await (await http(s, '/messages')).json()) as { messages: ReceivedMessage[] }).messages;
    const files = async (ext: string) =>
      (await readdir(logDir)).filter((f) => f.endsWith(ext)).sort();

    it('creates no file per message until a read, then the same .eml and .json files as on accept', async () => {
      const s = await startOnRead();
      const ids = await sendRaw(s, sent);
      expect(s.health().messages).toBe(4);
      expect(await readdir(logDir)).toEqual(['accepted.jsonl']);

      const messages = await listed(s);
      expect(messages.map((m) => [m.id, m.subject, m.envelope.rcptTo])).toEqual(
        ids.map((id, i) => [id, `log ${i}`, [`r${i}@example.com`, 'hidden@example.com']]),
      );
      expect(messages[0]!.text).toContain('Grüße 0\n.a line that starts with a dot');
      expect(messages.map((m) => m.size)).toEqual(sent.map((b) => b.length));
      expect(await files('.eml')).toEqual(ids.map((id) => `${id}.eml`).sort());
      expect(await files('.json')).toEqual(ids.map((id) => `${id}.json`).sort());
      for (const [i, id] of ids.entries()) {
        expect((await readFile(join(logDir, `${id}.eml`))).equals(sent[i]!), `${id}.eml`).toBe(
          true,
        );
        expect(
          Buffer.from(await (await http(s, `/messages/${id}/raw`)).arrayBuffer()).equals(sent[i]!),
        ).toBe(true);
        expect(JSON.parse(await readFile(join(logDir, `${id}.json`), 'utf8'))).toEqual(messages[i]);
      }
      expect((await readFile(join(logDir, 'accepted.jsonl'))).length).toBe(0);

      // Accepting goes on in the emptied log.
      const [later] = await sendRaw(s, [rawMessage(9)], 9);
      expect(await files('.eml')).toHaveLength(4);
      expect(s.get(later!)).toBeUndefined();
      await s.settled();
      expect(s.get(later!)).toMatchObject({ subject: 'log 9' });
      expect((await readFile(join(logDir, `${later}.eml`))).equals(rawMessage(9))).toBe(true);
    });

    it('serves every accepted message after a stop and start before any read', async () => {
      const s = await startOnRead();
      const ids = await sendRaw(s, sent);
      await s.stop();
      logSink = undefined;
      expect(await readdir(logDir)).toEqual(['accepted.jsonl']);

      const again = await startOnRead();
      expect(again.health().messages).toBe(4);
      const messages = await listed(again);
      expect(messages.map((m) => [m.id, m.messageId, m.envelope.mailFrom])).toEqual(
        ids.map((id, i) => [id, `log${i}@x`, 'bounce@example.com']),
      );
      for (const [i, id] of ids.entries())
        expect((await readFile(join(logDir, `${id}.eml`))).equals(sent[i]!)).toBe(true);
    });

    it('drops only a torn last message at start, and appends after the last whole one', async () => {
      const s = await startOnRead();
      const ids = await sendRaw(s, sent);
      await s.stop();
      logSink = undefined;
      // As if the process had been killed inside the write of the last message.
      const log = join(logDir, 'accepted.jsonl');
      await truncate(log, (await stat(log)).size - 5);

      const again = await startOnRead();
      expect(again.health().messages).toBe(3);
      const [next] = await sendRaw(again, [rawMessage(7)], 7);
      await again.stop();
      logSink = undefined;

      // And a sink that builds views on accept recovers the log as well, at start.
      const onAccept = await startOnRead('on-accept');
      expect(onAccept.list().map((m) => m.id)).toEqual([ids[0], ids[1], ids[2], next]);
      expect(onAccept.list().map((m) => m.subject)).toEqual(['log 0', 'log 1', 'log 2', 'log 7']);
      expect((await readFile(join(logDir, `${ids[1]}.eml`))).equals(sent[1]!)).toBe(true);
      expect(await files('.eml')).toHaveLength(4);
      expect(await files('.jsonl')).toEqual([]);
    });

    it('deletes one pending message or clears them all', async () => {
      const s = await startOnRead();
      const ids = await sendRaw(s, sent.slice(0, 3));
      expect(await readdir(logDir)).toEqual(['accepted.jsonl']);
      expect((await http(s, `/messages/${ids[1]}`, { method: 'DELETE' })).status).toBe(204);
      expect(s.health().messages).toBe(2);
      expect(await files('.eml')).toEqual([`${ids[0]}.eml`, `${ids[2]}.eml`].sort());
      expect((await listed(s)).map((m) => m.id)).toEqual([ids[0], ids[2]]);

      await sendRaw(s, sent.slice(3), 3);
      expect(s.health().messages).toBe(3);
      expect((await http(s, '/messages', { method: 'DELETE' })).status).toBe(204);
      expect(s.health().messages).toBe(0);
      expect(await readdir(logDir)).toEqual(['accepted.jsonl']);
      expect((await readFile(join(logDir, 'accepted.jsonl'))).length).toBe(0);

      // Nothing comes back after a restart.
      await s.stop();
      logSink = undefined;
      const again = await startOnRead();
      expect(again.health().messages).toBe(0);
      expect(await listed(again)).toEqual([]);
    });
  });

  it('refuses messages over the size limit', async () => {
    const small = createSmtpSink({ port: 0, dir, maxMessageBytes: 2048 });
    await small.start();
    try {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: small.port, secure: false });
      await expect(
        t.sendMail({ from: 'a@example.com', to: 'b@example.com', text: 'x'.repeat(10_000) }),
      ).rejects.toThrow(/552|size/i);
      t.close();
      expect(small.list()).toHaveLength(0);
      expect(small.httpPort).toBeNull();
    } finally {
      await small.stop();
    }
  });
});
