// SMS and push providers against small servers on 127.0.0.1 that answer the way Twilio,
// FCM HTTP v1 and APNs (HTTP/2, test/support/provider-servers.ts) document; the device
// registry is the real Redis.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolate } from '../../test/support/isolation.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createDeviceRegistry } from './devices.ts';
import { createPushProvider } from './push.ts';
import { createSmsProvider } from './sms.ts';
import { createApnsTokenSource, type TokenSource } from './push-auth.ts';
import {
  startApnsServer,
  startFcmServer,
  type ApnsServer,
} from '../../test/support/provider-servers.ts';
import type { OutgoingMessage } from '../provider.ts';

interface Hit {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}
const hits: Hit[] = [];
let server: Server;
let base = '';
let redis: Redis;
let apnsServer: ApnsServer;
const iso = isolate('delivery');
const config = iso.config();
const keys = createKeySpace(config.redis.keyPrefix);

const json = (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void => {
  res
    .writeHead(status, { 'Content-Type': 'application/json', ...headers })
    .end(JSON.stringify(body));
};

function twilio(req: Hit, res: ServerResponse): void {
  if (req.headers.authorization !== `Basic ${Buffer.from('AC123:tw-token').toString('base64')}`)
    return json(res, 401, { code: 20003, message: 'Authenticate' });
  const form = new URLSearchParams(req.body);
  const to = form.get('To');
  if (to === '+15005550001')
    return json(res, 400, {
      code: 21211,
      message: "The 'To' number +15005550001 is not a valid phone number.",
      status: 400,
    });
  if (to === '+15005550009')
    return json(res, 400, {
      code: 21610,
      message: 'Attempt to send to unsubscribed recipient',
      status: 400,
    });
  if (to === '+15005550008')
    return json(res, 429, { code: 20429, message: 'Too Many Requests' }, { 'Retry-After': '2' });
  json(res, 201, { sid: `SM${hits.length}`, status: 'queued', to, body: form.get('Body') });
}

function fcm(req: Hit, res: ServerResponse): void {
  if (req.headers.authorization !== 'Bearer fcm-token')
    return json(res, 401, {
      error: { code: 401, status: 'UNAUTHENTICATED', message: 'bad token' },
    });
  const token = (JSON.parse(req.body) as { message: { token: string } }).message.token;
  const fcmError = (code: number, status: string, errorCode: string) =>
    json(res, code, {
      error: {
        code,
        status,
        message: errorCode,
        details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode }],
      },
    });
  if (token.startsWith('dead')) return fcmError(404, 'NOT_FOUND', 'UNREGISTERED');
  if (token.startsWith('busy')) return fcmError(503, 'UNAVAILABLE', 'UNAVAILABLE');
  json(res, 200, { name: `projects/demo-app/messages/${hits.length}` });
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const hit: Hit = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      hits.push(hit);
      if (hit.path === '/2010-04-01/Accounts/AC123/Messages.json' && hit.method === 'POST')
        return twilio(hit, res);
      if (hit.path === '/v1/projects/demo-app/messages:send' && hit.method === 'POST')
        return fcm(hit, res);
      json(res, 404, { message: 'no such route' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: 2 });
  apnsServer = await startApnsServer();
});

afterAll(async () => {
  const left = await redis.keys(`${keys.global('')}*`);
  if (left.length) await redis.del(...left);
  await redis.quit();
  await apnsServer.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function msg(
  channel: 'sms' | 'push',
  recipient: Partial<OutgoingMessage['recipient']>,
  sendId = `s-${randomUUID()}`,
): OutgoingMessage {
  return {
    sendId,
    ruleId: 'payment-failed',
    category: 'transactional',
    channel,
    recipient: { userId: 'u1', locale: 'en', timezone: 'UTC', ...recipient },
    content:
      channel === 'sms'
        ? { body: 'Your payment was declined.' }
        : {
            title: 'Payment declined',
            body: 'Update your card',
            url: 'https://app.example.com/billing',
          },
  };
}

describe('SMS provider (Twilio-shaped)', () => {
  const sms = () =>
    createSmsProvider(
      { apiUrl: base, accountSid: 'AC123', authToken: 'tw-token', from: '+15005550006' },
      { logger: silentLogger() },
    );

  it('posts the form Twilio expects, with Basic auth, and returns the message sid', async () => {
    const result = await sms().send(msg('sms', { phone: '+1 (500) 555-0007' }, 'sms-1'));
    expect(result).toMatchObject({
      status: 'sent',
      providerMessageId: expect.stringMatching(/^SM/),
    });
    const hit = hits.find((h) => h.headers['i-twilio-idempotency-token'] === 'sms-1')!;
    expect(hit.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(Object.fromEntries(new URLSearchParams(hit.body))).toEqual({
      To: '+15005550007',
      From: '+15005550006',
      Body: 'Your payment was declined.',
    });
  });

  it('maps Twilio errors: invalid number, STOP, rate limit, bad credentials', async () => {
    expect(await sms().send(msg('sms', { phone: '+15005550001' }))).toMatchObject({
      status: 'permanent',
      suppress: 'invalid_address',
    });
    expect(await sms().send(msg('sms', { phone: '+15005550009' }))).toMatchObject({
      status: 'permanent',
      suppress: 'complaint',
    });
    expect(await sms().send(msg('sms', { phone: '+15005550008' }))).toMatchObject({
      status: 'retriable',
      retryAfterMs: 2000,
    });
    const wrongCreds = createSmsProvider(
      { apiUrl: base, accountSid: 'AC123', authToken: 'nope', from: '+15005550006' },
      { logger: silentLogger() },
    );
    expect((await wrongCreds.send(msg('sms', { phone: '+15005550007' }))).status).toBe('retriable');
  });

  it('refuses numbers that are not E.164 without calling the API', async () => {
    const before = hits.length;
    expect(await sms().send(msg('sms', { phone: '0171 1234567' }))).toMatchObject({
      status: 'permanent',
      suppress: 'invalid_address',
    });
    expect(await sms().send(msg('sms', {}))).toMatchObject({
      status: 'permanent',
      suppress: 'invalid_address',
    });
    expect(hits.length).toBe(before);
  });

  it('treats an unreachable API as retriable', async () => {
    const down = createSmsProvider(
      {
        apiUrl: 'http://127.0.0.1:1',
        accountSid: 'AC123',
        authToken: 'tw-token',
        from: '+15005550006',
        timeoutMs: 1000,
      },
      { logger: silentLogger() },
    );
    expect((await down.send(msg('sms', { phone: '+15005550007' }))).status).toBe('retriable');
  });
});

describe('push provider (FCM HTTP v1 + APNs over HTTP/2)', () => {
  // The FCM stand-in here takes one fixed token; minting is push-auth.int.test.ts's subject.
  const fcmTokens: TokenSource = { token: async () => 'fcm-token', invalidate: () => undefined };
  const providers: { close?(): Promise<void> }[] = [];
  afterAll(async () => {
    for (const p of providers) await p.close?.();
  });
  const push = (devices = createDeviceRegistry({ redis, keys })) => {
    const p = createPushProvider(
      {
        fcmApiUrl: base,
        fcmProjectId: 'demo-app',
        apnsApiUrl: apnsServer.url,
        apnsTopic: 'com.example.app',
      },
      {
        logger: silentLogger(),
        devices,
        fcmTokens,
        apnsTokens: createApnsTokenSource({
          key: apnsServer.key.pem,
          keyId: apnsServer.key.keyId,
          teamId: apnsServer.key.teamId,
        }),
      },
    );
    providers.push(p);
    return p;
  };

  it('sends to every registered device in the shape each service expects', async () => {
    const devices = createDeviceRegistry({ redis, keys });
    await devices.register('u-push', { token: 'android-1', platform: 'fcm' });
    await devices.register('u-push', { token: 'ios-1', platform: 'apns' });
    const result = await push(devices).send(msg('push', { userId: 'u-push' }, 'push-1'));
    expect(result.status).toBe('sent');
    const fcmHit = hits.find((h) => h.path.endsWith('messages:send') && h.body.includes('push-1'))!;
    expect(fcmHit.headers.authorization).toBe('Bearer fcm-token');
    expect(JSON.parse(fcmHit.body)).toEqual({
      message: {
        token: 'android-1',
        notification: { title: 'Payment declined', body: 'Update your card' },
        data: {
          sendId: 'push-1',
          ruleId: 'payment-failed',
          url: 'https://app.example.com/billing',
        },
      },
    });
    // The APNs server verified the ES256 provider token before accepting it.
    const note = apnsServer.notifications.find(
      (n) => n.device === 'ios-1' && (n.payload as { sendId?: string }).sendId === 'push-1',
    )!;
    expect(note.topic).toBe('com.example.app');
    expect(note.payload).toMatchObject({
      aps: { alert: { title: 'Payment declined', body: 'Update your card' } },
      sendId: 'push-1',
    });
    expect(apnsServer.refused).toEqual([]);
  });

  it('removes tokens the services report as dead and still delivers to the live ones', async () => {
    const devices = createDeviceRegistry({ redis, keys });
    await devices.register('u-mixed', { token: 'dead-android', platform: 'fcm' });
    await devices.register('u-mixed', { token: 'gone-ios', platform: 'apns' });
    await devices.register('u-mixed', { token: 'live-android', platform: 'fcm' });
    expect((await push(devices).send(msg('push', { userId: 'u-mixed' }))).status).toBe('sent');
    expect((await devices.list('u-mixed')).map((d) => d.token)).toEqual(['live-android']);
  });

  it('reports dead devices without closing the channel, and retriable when the service is down', async () => {
    const devices = createDeviceRegistry({ redis, keys });
    await devices.register('u-dead', { token: 'dead-1', platform: 'fcm' });
    // Registry tokens are cleaned up, so the channel itself must stay open for the next device.
    const dead = await push(devices).send(msg('push', { userId: 'u-dead' }));
    expect(dead).toMatchObject({ status: 'permanent' });
    expect(dead.status === 'permanent' && dead.suppress).toBeFalsy();
    expect(await devices.list('u-dead')).toEqual([]);
    // A dead token from the user's traits cannot be cleaned up here: it is reported for suppression.
    expect(
      await push(devices).send(msg('push', { userId: 'u-dead2', deviceTokens: ['dead-trait'] })),
    ).toMatchObject({ status: 'permanent', suppress: 'invalid_token' });
    await devices.register('u-busy', { token: 'busy-1', platform: 'fcm' });
    expect((await push(devices).send(msg('push', { userId: 'u-busy' }))).status).toBe('retriable');
    expect((await devices.list('u-busy')).length).toBe(1);
  });

  it('uses tokens from the user traits too, and refuses users without devices', async () => {
    expect(
      (await push().send(msg('push', { userId: 'u-traits', deviceTokens: ['trait-token'] })))
        .status,
    ).toBe('sent');
    expect(await push().send(msg('push', { userId: 'u-none' }))).toMatchObject({
      status: 'permanent',
    });
  });

  it('registers, lists and unregisters devices under the user hash tag', async () => {
    const devices = createDeviceRegistry({ redis, keys });
    await devices.register('u-reg', { token: 'a', platform: 'fcm' }, 1);
    await devices.register('u-reg', { token: 'b', platform: 'apns' }, 2);
    expect(await devices.list('u-reg')).toEqual([
      { token: 'b', platform: 'apns', registeredAt: 2 },
      { token: 'a', platform: 'fcm', registeredAt: 1 },
    ]);
    expect(await devices.unregister('u-reg', 'a')).toBe(true);
    expect(await devices.unregister('u-reg', 'a')).toBe(false);
    expect(await redis.exists(keys.user('u-reg', 'devices'))).toBe(1);
    expect(keys.user('u-reg', 'devices')).toContain('{u-reg}');
  });
});

describe('createProviders', () => {
  it('builds every configured channel in priority order and names the missing settings', async () => {
    const { createProviders } = await import('../channels.ts');
    const fcm = await startFcmServer();
    try {
      const full = iso.config({
        LC_SMTP_URLS: 'smtp://127.0.0.1:1,smtp://127.0.0.1:2',
        LC_SMS_API_URLS: `${base},http://127.0.0.1:1`,
        LC_SMS_ACCOUNT_SIDS: 'AC123',
        LC_SMS_SENDERS: '+15005550006',
        LC_SMS_AUTH_TOKENS: 'tw-token',
        LC_PUSH_API_URLS: `${fcm.url},http://127.0.0.1:1`,
        LC_FCM_SERVICE_ACCOUNT: fcm.account.json,
      });
      const providers = createProviders(full, { logger: silentLogger(), redis: { redis, keys } });
      expect(
        Object.fromEntries([...providers].map(([c, ps]) => [c, ps.map((p) => p.name)])),
      ).toEqual({
        email: ['smtp-1', 'smtp-2'],
        inapp: ['inapp'],
        webhook: ['webhook'],
        sms: ['sms-1', 'sms-2'],
        push: ['push-1', 'push-2'],
      });
      expect(
        (await providers.get('sms')![0]!.send(msg('sms', { phone: '+15005550007' }))).status,
      ).toBe('sent');
      // The project id comes from the key file when LC_PUSH_PROJECT_ID is empty.
      expect(
        (
          await providers
            .get('push')![0]!
            .send(msg('push', { userId: 'u-cp', deviceTokens: ['android-cp'] }))
        ).status,
      ).toBe('sent');
      expect(fcm.issued).toHaveLength(1);
      for (const list of providers.values()) for (const p of list) await p.close?.();
    } finally {
      await fcm.close();
    }

    const incomplete = iso.config({ LC_SMS_API_URLS: `${base},${base}` });
    expect(() =>
      createProviders(incomplete, { logger: silentLogger(), redis: { redis, keys } }),
    ).toThrow(/LC_SMS_ACCOUNT_SIDS has no entry for provider 1/);
    expect(() =>
      createProviders(
        iso.config({
          LC_SMS_API_URLS: `${base},${base}`,
          LC_SMS_ACCOUNT_SIDS: 'AC1,AC2',
          LC_SMS_AUTH_TOKENS: 'a,b,c',
          LC_SMS_SENDERS: '+15005550006,',
        }),
        { logger: silentLogger(), redis: { redis, keys } },
      ),
    ).toThrow(/LC_SMS_SENDERS has no entry for provider 2/);
    expect(() =>
      createProviders(iso.config({ LC_PUSH_API_URLS: base, LC_PUSH_PROJECT_ID: 'demo-app' }), {
        logger: silentLogger(),
        redis: { redis, keys },
      }),
    ).toThrow(/LC_FCM_SERVICE_ACCOUNT/);
    // A deployment still on the replaced single-provider variables is told what to set.
    expect(() => iso.config({ LC_SMS_API_URL: base, LC_FCM_ACCESS_TOKEN: 'x' })).toThrow(
      /LC_SMS_API_URL is no longer read: set LC_SMS_API_URLS[\s\S]*LC_FCM_ACCESS_TOKEN is no longer read/,
    );
  });
});
