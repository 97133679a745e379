// The accept-to-record window, forced: a TCP proxy between the delivery process and the SMTP
// sink withholds the relay's `250` after a message's data (the relay has stored the message,
// the sender never hears so: RFC 1047), and the delivery process is SIGKILLed right then.
// After a restart, the send is taken over. With the relay lookup configured it is found in
// the relay's log and recorded as sent: the message arrives once. Without it the same kill
// sends it again (same Message-ID): the window is real, and the lookup is what closes it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  createHarness,
  startSink,
  stopSink,
  waitFor,
  welcomeSend,
  type Harness,
} from '../../test/support/delivery-harness.ts';
import type { SmtpSink } from '../../devtools/smtp-sink.ts';

/** Forwards SMTP both ways; once armed, swallows the server's reply to the next message's data. */
function withholdingProxy(target: number) {
  let armed = true;
  let onWithheld: () => void = () => {};
  const withheld = new Promise<void>((r) => (onWithheld = r));
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    sockets.add(client).add(upstream);
    let inData = false;
    let tail = '';
    let holdReply = false;
    client.on('data', (chunk) => {
      const text = tail + chunk.toString('latin1');
      if (!inData && /^DATA\r\n/im.test(chunk.toString('latin1'))) inData = true;
      else if (inData && text.includes('\r\n.\r\n')) {
        inData = false;
        if (armed) holdReply = true;
      }
      tail = text.slice(-4);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (holdReply) {
        holdReply = false;
        armed = false;
        onWithheld();
        return;
      }
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  return {
    withheld,
    listen: () =>
      new Promise<number>((r) =>
        server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)),
      ),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let h: Harness | undefined;
let sink: (SmtpSink & { dir: string }) | undefined;
let child: ChildProcess | null = null;
let proxy: ReturnType<typeof withholdingProxy> | undefined;

afterEach(async () => {
  child?.kill('SIGKILL');
  child = null;
  await proxy?.close();
  proxy = undefined;
  if (sink) await stopSink(sink);
  sink = undefined;
});
afterAll(async () => {
  await h?.close();
});

async function killInTheWindow(lookup: boolean) {
  h ??= await createHarness('dlv-window');
  sink = await startSink({ http: true });
  proxy = withholdingProxy(sink.port);
  const proxyPort = await proxy.listen();
  const logDir = await mkdtemp(join(tmpdir(), 'lc-dlv-window-'));
  const env = {
    ...process.env,
    ...h.env,
    LC_DELIVERY_GROUP: `dlv-window-${lookup ? 'lookup' : 'plain'}-${h.id}`,
    LC_SMTP_URLS: `smtp://127.0.0.1:${proxyPort}`,
    LC_SMTP_LOOKUP_URLS: lookup
      ? `http://127.0.0.1:${sink.httpPort}/messages?messageId={messageId}`
      : '',
    LC_SMTP_LOOKUP_FOUND: '/messages',
    LC_QUIET_HOURS: '',
    LC_DELIVERY_LEASE_MS: '1500',
    LC_LOG_LEVEL: 'info',
    KAFKAJS_NO_PARTITIONER_WARNING: '1',
  };
  const logs: string[] = [];
  const start = (n: number) => {
    const file = join(logDir, `run-${n}.log`);
    logs.push(file);
    const p = spawn(process.execPath, ['--import', 'tsx/esm', 'delivery/pipeline/main.ts'], {
      cwd: process.cwd(),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = createWriteStream(file);
    p.stdout!.pipe(out);
    p.stderr!.pipe(out);
    return p;
  };

  const send = welcomeSend(`w-${lookup ? 'l' : 'p'}-${h.id}`, { category: 'transactional' });
  const messageId = `${send.sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;
  child = start(1);
  await h.publishSend(send);
  await proxy.withheld;
  // The sink has the message; the sender has not heard back. Kill it now.
  child.kill('SIGKILL');
  await new Promise((r) => child!.once('exit', r));
  expect(sink.list({ messageId })).toHaveLength(1);

  child = start(2);
  await waitFor(
    'the send to be settled after the takeover',
    () => h!.outcomes.some((o) => o.sendId === send.sendId && o.status === 'sent'),
    60_000,
    100,
  );
  // Time for a second copy to arrive if one was sent.
  await new Promise((r) => setTimeout(r, 1000));
  const text = (await Promise.all(logs.map((f) => readFile(f, 'utf8')))).join('\n');
  const sent = h.outcomes.filter((o) => o.sendId === send.sendId && o.status === 'sent');
  return { copies: sink.list({ messageId }).length, text, sent };
}

describe('the accept-to-record window', () => {
  it('closed by the relay lookup: a kill after the relay stored the message does not duplicate it', async () => {
    const r = await killInTheWindow(true);
    expect(r.text).toContain('taking over a send whose provider call may have completed');
    expect(r.text).toContain('recorded as sent, not sent again');
    expect(r.copies).toBe(1);
    expect(r.sent[0]!.reason).toMatch(/^reconciled/);
  }, 120_000);

  it('open without it: the same kill sends the message again, with the same Message-ID', async () => {
    const r = await killInTheWindow(false);
    expect(r.text).toContain('taking over a send whose provider call may have completed');
    expect(r.copies).toBe(2);
  }, 120_000);
});
