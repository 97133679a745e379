import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import { createSmtpProvider } from './email.ts';
import { createRelayLookup } from './relay-lookup.ts';
import type { OutgoingMessage } from '../provider.ts';

// A relay's message search: /search?id=<Message-ID> answers from `known`; /status/<code> answers that code.
const known = new Set(['welcome-u1@example.com', 'a/b~c@example.com']);
const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://relay');
    const status = /^\/status\/(\d+)/.exec(url.pathname);
    if (status) return void res.writeHead(Number(status[1])).end('{}');
    if (url.pathname === '/text')
      return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    const id = url.searchParams.get('id') ?? '';
    const hits = known.has(id) ? [{ id }] : [];
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ paging: {}, 'items/x': hits, total: hits.length, items: hits }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('relay lookup', () => {
  it('finds an accepted message by its Message-ID, brackets stripped and URL-encoded', async () => {
    const lookup = createRelayLookup({
      url: `${base}/search?id={messageId}`,
      foundPointer: '/items',
    });
    expect(await lookup('<welcome-u1@example.com>')).toBe(true);
    expect(await lookup('<never-sent@example.com>')).toBe(false);
    expect(await lookup('<a/b~c@example.com>')).toBe(true);
    expect(seen.at(-1)!.url).toBe('/search?id=a%2Fb~c%40example.com');
  });

  it('reads counts, escaped pointer segments and a 404 as not found', async () => {
    expect(
      await createRelayLookup({ url: `${base}/search?id={messageId}`, foundPointer: '/total' })(
        '<welcome-u1@example.com>',
      ),
    ).toBe(true);
    expect(
      await createRelayLookup({ url: `${base}/search?id={messageId}`, foundPointer: '/items~1x' })(
        '<nope@example.com>',
      ),
    ).toBe(false);
    expect(
      await createRelayLookup({ url: `${base}/status/404?id={messageId}`, foundPointer: '/items' })(
        '<x@example.com>',
      ),
    ).toBe(false);
  });

  it('sends credentials from the URL as Basic auth, not in the URL', async () => {
    const at = base.replace('http://', 'http://api:s3cr%40t@');
    await createRelayLookup({ url: `${at}/search?id={messageId}`, foundPointer: '/items' })(
      '<welcome-u1@example.com>',
    );
    expect(seen.at(-1)!.headers.authorization).toBe(
      `Basic ${Buffer.from('api:s3cr@t').toString('base64')}`,
    );
    expect(seen.at(-1)!.url).not.toContain('s3cr');
  });

  it('throws when it cannot tell, naming the host but no secret', async () => {
    const at = base.replace('http://', 'http://api:key@');
    await expect(
      createRelayLookup({ url: `${at}/status/503?id={messageId}`, foundPointer: '' })('<m@x>'),
    ).rejects.toThrow(/answered HTTP 503/);
    await expect(
      createRelayLookup({ url: `${base}/text?id={messageId}`, foundPointer: '' })('<m@x>'),
    ).rejects.toThrow(/did not answer JSON/);
    await expect(
      createRelayLookup({ url: `${base}/search?id={messageId}`, foundPointer: '/nothing' })(
        '<m@x>',
      ),
    ).rejects.toThrow(/nothing at \/nothing/);
    await expect(
      createRelayLookup({ url: 'http://127.0.0.1:1/search?id={messageId}', foundPointer: '' })(
        '<m@x>',
      ),
    ).rejects.toThrow(/relay lookup at 127\.0\.0\.1:1 failed/);
    const err = await createRelayLookup({
      url: `${at}/status/500?id={messageId}`,
      foundPointer: '',
    })('<m@x>').catch((e: Error) => e);
    expect(String(err)).not.toContain('key');
  });

  it('refuses a URL without {messageId} or a pointer that is not one', () => {
    expect(() => createRelayLookup({ url: `${base}/search`, foundPointer: '' })).toThrow(
      /\{messageId\}/,
    );
    expect(() =>
      createRelayLookup({ url: `${base}/search?id={messageId}`, foundPointer: 'items' }),
    ).toThrow(/must be empty or start with/);
  });

  it('gives the email provider an `accepted` that asks by the Message-ID the provider writes', async () => {
    const smtp = createSmtpProvider(
      {
        name: 'smtp-1',
        url: 'smtp://127.0.0.1:1',
        from: 'Example <hello@example.com>',
        lookup: createRelayLookup({ url: `${base}/search?id={messageId}`, foundPointer: '/items' }),
      },
      { logger: silentLogger() },
    );
    const message = (sendId: string): OutgoingMessage => ({
      sendId,
      ruleId: 'r',
      category: 'transactional',
      channel: 'email',
      recipient: { userId: 'u1', locale: 'en', timezone: 'UTC' },
      content: {},
    });
    expect(await smtp.accepted!(message('welcome:u1'))).toBe(true);
    expect(await smtp.accepted!(message('welcome:u2'))).toBe(false);
    await smtp.close?.();
    const plain = createSmtpProvider(
      { name: 'smtp-2', url: 'smtp://127.0.0.1:1', from: 'hello@example.com' },
      { logger: silentLogger() },
    );
    expect(plain.accepted).toBeUndefined();
    await plain.close?.();
  });
});
