// Provider calls that end without an answer. A relay that stored a message may still never
// say so: the connection drops right after the data, or the relay goes silent while keeping
// the connection busy (a pooled nodemailer call then never calls back). The first must be
// retried only after asking the relay's message log; the second must end at the call's
// deadline (LC_SMTP_SEND_TIMEOUT_MS) and be treated the same. Either way the user gets one
// copy, and the outcome says the relay had it.
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createHarness,
  logger,
  startSink,
  stopSink,
  waitFor,
  welcomeSend,
  type Harness,
} from '../../test/support/delivery-harness.ts';
import type { SmtpSink } from '../../devtools/smtp-sink.ts';
import { runDelivery, type DeliveryHandle } from './run.ts';

type Misbehaviour = 'drop' | 'trickle';

/**
 * Forwards SMTP both ways; for the first message only, once the relay has the data, the
 * relay's reply is withheld and the connection dropped (`drop`), or kept alive with a
 * multi-line reply that never ends (`trickle`: a byte every 200 ms, so no idle timeout fires).
 */
function misbehavingRelay(target: number, how: Misbehaviour) {
  let armed = true;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
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
      if (!holdReply) return void client.write(chunk);
      holdReply = false;
      armed = false;
      if (how === 'drop') {
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write('250-');
      const t = setInterval(() => client.write('x'), 200);
      timers.add(t);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  return {
    listen: () =>
      new Promise<number>((r) =>
        server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)),
      ),
    close: () => {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let h: Harness | undefined;
let sink: (SmtpSink & { dir: string }) | undefined;
let relay: ReturnType<typeof misbehavingRelay> | undefined;
let delivery: DeliveryHandle | undefined;

afterEach(async () => {
  await delivery?.stop().catch(() => undefined);
  delivery = undefined;
  await relay?.close();
  relay = undefined;
  await h?.close();
  h = undefined;
  if (sink) await stopSink(sink);
  sink = undefined;
});

async function sendThrough(how: Misbehaviour) {
  sink = await startSink({ http: true });
  relay = misbehavingRelay(sink.port, how);
  const relayPort = await relay.listen();
  h = await createHarness(`dlv-ambiguous-${how}`, {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${relayPort}`],
    'delivery.smtpLookupUrls': [`http://127.0.0.1:${sink.httpPort}/messages?messageId={messageId}`],
    'delivery.smtpLookupFound': '/messages',
    'delivery.smtpSendTimeoutMs': 1500,
    'delivery.retryBaseMs': 300,
  });
  delivery = await runDelivery(h.config, logger);
  const send = welcomeSend(`amb-${how}-${h.id}`, { category: 'transactional' });
  const messageId = `${send.sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;
  const started = Date.now();
  await h.publishSend(send);
  const sent = await waitFor(
    'a sent outcome',
    () => h!.outcomes.find((o) => o.sendId === send.sendId && o.status === 'sent'),
    40_000,
    100,
  );
  // Time for a second copy to arrive if one was sent.
  await new Promise((r) => setTimeout(r, 1500));
  return {
    copies: sink.list({ messageId }).length,
    sent,
    ms: Date.now() - started,
    deferred: h.outcomes.filter((o) => o.sendId === send.sendId && o.status === 'deferred'),
  };
}

describe('a provider call without an answer', () => {
  it('the relay stored the message and dropped the connection: the retry finds it and does not send a second copy', async () => {
    const r = await sendThrough('drop');
    expect(r.deferred.length).toBeGreaterThan(0);
    expect(r.copies).toBe(1);
    expect(r.sent.reason).toMatch(/^reconciled/);
  }, 90_000);

  it('the relay stored the message and went silent: the call ends at its deadline, the retry finds it', async () => {
    const r = await sendThrough('trickle');
    expect(r.deferred[0]?.reason).toContain('no answer from the relay within 1500 ms');
    expect(r.copies).toBe(1);
    expect(r.sent.reason).toMatch(/^reconciled/);
  }, 90_000);
});
