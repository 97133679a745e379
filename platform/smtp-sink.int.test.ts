// The sink module itself, in-process on free ports: SMTP in, HTTP out, kept on disk across
// a restart, and cleared on request.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSmtpSink, type ReceivedMessage, type SmtpSink } from './smtp-sink.ts';

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

  const api = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${sink.httpPort}${path}`, init);
  const send = async (n: number, auth = false) => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: sink.port, secure: false, ...(auth ? { auth: { user: 'relay', pass: 'secret' } } : {}) });
    try {
      for (let i = 0; i < n; i++) {
        await t.sendMail({ from: 'a@example.com', to: [`b${i}@example.com`], cc: 'c@example.com', subject: `hello ${i}`, text: `body ${i}`, messageId: `<m${i}@x>` });
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

    const one = (await (await api('/messages?messageId=%3Cm1%40x%3E')).json()) as { messages: ReceivedMessage[] };
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
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: sink.port, secure: false, pool: true, maxConnections: 4 });
    try {
      await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          await t.sendMail({ from: 'a@example.com', to: 'z@example.com', subject: `now ${i}`, text: 'x', messageId: `<now${i}@x>` });
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
    const raw = Buffer.from('From: a@example.com\r\nTo: late@example.com\r\nSubject: late\r\nMessage-ID: <late@x>\r\n\r\nbody\r\n');
    const id = '1700000000000-00000000abcd';
    await writeFile(join(dir, `${id}.eml`), raw);
    // As a sink with views on read leaves it: the raw bytes and a journal line with the envelope.
    await writeFile(join(dir, 'accepted.jsonl'), `${JSON.stringify({ id, envelope: { mailFrom: 'a@example.com', rcptTo: ['hidden@example.com'] }, receivedAt: new Date(0).toISOString(), size: raw.length })}\n`);
    await sink.stop();
    sink = createSmtpSink({ port: 0, httpPort: 0, dir });
    await sink.start();
    const [m] = sink.list({ messageId: 'late@x' });
    expect(m).toMatchObject({ id, subject: 'late', to: ['late@example.com'], envelope: { rcptTo: ['hidden@example.com'] } });
    expect(m!.text.trim()).toBe('body');
    expect(JSON.parse(await readFile(join(dir, `${id}.json`), 'utf8'))).toMatchObject({ messageId: 'late@x' });
    await sink.clear();
    expect(await readdir(dir)).toEqual([]);
  });

  it('with views on read, answers before parsing and still serves every answered message over HTTP, also after a restart', async () => {
    const lazyDir = await mkdtemp(join(tmpdir(), 'lc-sink-lazy-'));
    let lazy = createSmtpSink({ port: 0, httpPort: 0, dir: lazyDir, views: 'on-read' });
    await lazy.start();
    try {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: lazy.port, secure: false });
      for (let i = 0; i < 3; i++) await t.sendMail({ from: 'a@example.com', to: `l${i}@example.com`, bcc: 'hidden@example.com', subject: `lazy ${i}`, text: `body ${i}`, messageId: `<lazy${i}@x>` });
      t.close();
      expect(lazy.health().messages).toBe(3);
      // Raw bytes and envelope are on disk before any parse.
      const stored = (await readdir(lazyDir)).sort();
      expect(stored.filter((f) => f.endsWith('.eml'))).toHaveLength(3);
      expect(stored.filter((f) => f.endsWith('.json'))).toHaveLength(0);
      expect((await readFile(join(lazyDir, 'accepted.jsonl'), 'utf8')).trim().split('\n')).toHaveLength(3);

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
      expect(JSON.parse(await readFile(join(lazyDir, `${messages[0]!.id}.json`), 'utf8'))).toMatchObject({ messageId: 'lazy0@x' });
      // Every line has its view now: the journal is emptied, and new messages still land.
      expect(await readFile(join(lazyDir, 'accepted.jsonl'), 'utf8')).toBe('');
      const t2 = nodemailer.createTransport({ host: '127.0.0.1', port: lazy.port, secure: false });
      await t2.sendMail({ from: 'a@example.com', to: 'l3@example.com', subject: 'lazy 3', text: 'body 3', messageId: '<lazy3@x>' });
      t2.close();
      const again = (await (await fetch(`http://127.0.0.1:${lazy.httpPort}/messages?messageId=lazy3@x`)).json()) as { messages: ReceivedMessage[] };
      expect(again.messages.map((m) => m.subject)).toEqual(['lazy 3']);
    } finally {
      await lazy.stop();
      await rm(lazyDir, { recursive: true, force: true });
    }
  });

  it('refuses messages over the size limit', async () => {
    const small = createSmtpSink({ port: 0, dir, maxMessageBytes: 2048 });
    await small.start();
    try {
      const t = nodemailer.createTransport({ host: '127.0.0.1', port: small.port, secure: false });
      await expect(t.sendMail({ from: 'a@example.com', to: 'b@example.com', text: 'x'.repeat(10_000) })).rejects.toThrow(/552|size/i);
      t.close();
      expect(small.list()).toHaveLength(0);
      expect(small.httpPort).toBeNull();
    } finally {
      await small.stop();
    }
  });
});
