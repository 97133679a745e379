// The sink module itself, in-process on free ports: SMTP in, HTTP out, kept on disk across
// a restart, and cleared on request.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
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
