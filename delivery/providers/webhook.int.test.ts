// The webhook provider against a real HTTP receiver on 127.0.0.1 (the customer's endpoint).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import type { OutgoingMessage } from '../provider.ts';
import { createWebhookProvider, verifyWebhookSignature } from './webhook.ts';

const SECRET = 'whsec-test-secret';
interface Hit {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}
const hits: Hit[] = [];
let server: Server;
let base = '';

const routes: Record<string, (res: ServerResponse) => void> = {
  '/ok': (res) => res.writeHead(204).end(),
  '/redirect': (res) => res.writeHead(302, { Location: '/ok' }).end(),
  '/busy': (res) => res.writeHead(429, { 'Retry-After': '7' }).end(),
  '/broken': (res) => res.writeHead(503).end('down'),
  '/gone': (res) => res.writeHead(410).end(),
  '/bad': (res) => res.writeHead(400).end('nope'),
  '/slow': () => undefined, // never answers
};

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0]!;
      hits.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      (routes[path] ?? ((r: ServerResponse) => r.writeHead(404).end()))(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function message(webhookUrl: string, sendId = 'snd-w1'): OutgoingMessage {
  return {
    sendId,
    ruleId: 'payment-failed',
    category: 'transactional',
    channel: 'webhook',
    recipient: { userId: 'u1', webhookUrl, locale: 'en', timezone: 'UTC' },
    content: {
      title: 'Payment declined',
      body: 'Update your card',
      data: { template: 'payment_failed', user: { plan: 'pro' } },
    },
  };
}

const open = (extra: { timeoutMs?: number } = {}) =>
  createWebhookProvider(
    { secret: SECRET, allowPrivate: true, ...extra },
    { logger: silentLogger() },
  );

describe('webhook provider', () => {
  it('POSTs signed JSON that the documented verification accepts', async () => {
    const result = await open().send(message(`${base}/ok`));
    expect(result).toEqual({ status: 'sent' });
    const hit = hits.find((h) => h.path === '/ok')!;
    expect(hit.headers['content-type']).toBe('application/json');
    expect(hit.headers['idempotency-key']).toBe('snd-w1');
    const sig = hit.headers['x-lifecycle-signature'] as string;
    expect(sig).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(SECRET, hit.body, sig)).toBe(true);
    expect(verifyWebhookSignature('wrong-secret', hit.body, sig)).toBe(false);
    expect(JSON.parse(hit.body)).toMatchObject({
      id: 'snd-w1',
      type: 'lifecycle.message',
      ruleId: 'payment-failed',
      userId: 'u1',
      content: { title: 'Payment declined', data: { template: 'payment_failed' } },
    });
  });

  it('refuses loopback targets unless private targets are allowed, before connecting', async () => {
    const before = hits.length;
    const guarded = createWebhookProvider(
      { secret: SECRET, allowPrivate: false },
      { logger: silentLogger() },
    );
    for (const url of [
      `${base}/ok`,
      'http://localhost:1/ok',
      'http://[::1]:1/ok',
      'http://169.254.169.254/latest/meta-data/',
    ]) {
      const r = await guarded.send(message(url));
      expect(r, url).toMatchObject({ status: 'permanent', suppress: 'invalid_address' });
    }
    // A name whose DNS answer is private is refused the same way.
    const sneaky = createWebhookProvider(
      { secret: SECRET, allowPrivate: false },
      { logger: silentLogger(), resolve: async () => [{ address: '10.1.2.3', family: 4 }] },
    );
    expect((await sneaky.send(message('https://hooks.customer.example/x'))).status).toBe(
      'permanent',
    );
    expect(hits.length).toBe(before);
  });

  it('connects to the address it checked (no second DNS lookup)', async () => {
    let lookups = 0;
    const port = new URL(base).port;
    const pinned = createWebhookProvider(
      { secret: SECRET, allowPrivate: true },
      {
        logger: silentLogger(),
        resolve: async () => {
          lookups++;
          return [{ address: '127.0.0.1', family: 4 }];
        },
      },
    );
    // `hooks.invalid` never resolves through the system resolver: only the pinned address works.
    const r = await pinned.send(message(`http://hooks.invalid:${port}/ok`, 'snd-pin'));
    expect(r).toEqual({ status: 'sent' });
    expect(lookups).toBe(1);
    expect(
      hits.some(
        (h) =>
          h.headers['x-lifecycle-send-id'] === 'snd-pin' &&
          h.headers.host === `hooks.invalid:${port}`,
      ),
    ).toBe(true);
  });

  it('does not follow redirects', async () => {
    const okBefore = hits.filter((h) => h.path === '/ok').length;
    const r = await open().send(message(`${base}/redirect`));
    expect(r).toMatchObject({ status: 'permanent' });
    expect(r.status === 'permanent' && r.error).toMatch(/redirect/);
    expect(hits.filter((h) => h.path === '/ok').length).toBe(okBefore);
  });

  it('maps answers: 429 with Retry-After and 5xx retriable, 410 dead, 400 permanent', async () => {
    expect(await open().send(message(`${base}/busy`))).toMatchObject({
      status: 'retriable',
      retryAfterMs: 7000,
    });
    expect(await open().send(message(`${base}/broken`))).toMatchObject({ status: 'retriable' });
    expect(await open().send(message(`${base}/gone`))).toMatchObject({
      status: 'permanent',
      suppress: 'invalid_address',
    });
    const bad = await open().send(message(`${base}/bad`));
    expect(bad.status).toBe('permanent');
    expect(bad.status === 'permanent' && bad.suppress).toBeFalsy();
  });

  it('gives up on a receiver that never answers within the timeout', async () => {
    const started = Date.now();
    const r = await open({ timeoutMs: 300 }).send(message(`${base}/slow`));
    expect(r).toMatchObject({ status: 'retriable' });
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('counts the name lookup in the deadline, and does not connect when the answer comes after it', async () => {
    const slowAnswer = (ms: number) => () =>
      new Promise<{ address: string; family: 4 }[]>((resolve) =>
        setTimeout(() => resolve([{ address: '127.0.0.1', family: 4 }]), ms),
      );
    const withResolver = (ms: number, timeoutMs: number) =>
      createWebhookProvider(
        { secret: SECRET, allowPrivate: true, timeoutMs },
        { logger: silentLogger(), resolve: slowAnswer(ms) },
      );
    const url = (path: string) => `${base.replace('127.0.0.1', 'receiver.test')}${path}`;

    // 1.4 s of lookup + a receiver that never answers: 1.5 s in all, not 1.4 s + 1.5 s.
    const started = Date.now();
    const r = await withResolver(1400, 1500).send(message(url('/slow'), 'snd-w-dns-1'));
    expect(r).toMatchObject({
      status: 'retriable',
      error: expect.stringMatching(/timed out after 1500 ms/),
    });
    expect(Date.now() - started).toBeLessThan(2400);

    // The lookup answers after the deadline: the call has given up and the receiver hears nothing.
    const late = await withResolver(600, 200).send(message(url('/ok'), 'snd-w-dns-2'));
    expect(late).toMatchObject({ status: 'retriable' });
    await new Promise((resolve) => setTimeout(resolve, 900));
    expect(hits.filter((h) => h.headers['x-lifecycle-send-id'] === 'snd-w-dns-2')).toEqual([]);
  });

  it('refuses non-http schemes and missing URLs', async () => {
    expect((await open().send(message('file:///etc/passwd'))).status).toBe('permanent');
    expect((await open().send(message('gopher://127.0.0.1:70/'))).status).toBe('permanent');
    const m = message('x');
    delete m.recipient.webhookUrl;
    expect((await open().send(m)).status).toBe('permanent');
  });
});
