// Push with the credentials the product mints, against local servers that verify them
// (test/support/provider-servers.ts): an OAuth token endpoint that checks the service
// account's RS256 assertion with its public key and an FCM endpoint that takes only the access
// tokens it issued; an APNs server over HTTP/2 that checks the ES256 provider token. The
// providers are built from configuration, as delivery builds them, with two FCM-shaped APIs.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeySpace } from '../../platform/keys.ts';
import { silentLogger } from '../../platform/logger.ts';
import { isolate } from '../../test/support/isolation.ts';
import {
  startApnsServer,
  startFcmServer,
  type ApnsServer,
  type FcmServer,
} from '../../test/support/provider-servers.ts';
import { createProviders } from '../channels.ts';
import type { OutgoingMessage, Provider } from '../provider.ts';
import { createDeviceRegistry } from './devices.ts';

const iso = isolate('push-auth');
const keys = createKeySpace(iso.config().redis.keyPrefix);
let redis: Redis;
let fcm: FcmServer;
let fcmBackup: FcmServer;
let apns: ApnsServer;
let push: Provider[];

const message = (userId: string, sendId: string): OutgoingMessage => ({
  sendId,
  ruleId: 'payment-failed',
  category: 'transactional',
  channel: 'push',
  recipient: { userId, locale: 'en', timezone: 'UTC' },
  content: { title: 'Payment declined', body: 'Update your card' },
});

beforeAll(async () => {
  redis = new Redis(iso.config().redis.url, { maxRetriesPerRequest: 2 });
  fcm = await startFcmServer();
  fcmBackup = await startFcmServer('demo-app', { tokensFrom: fcm });
  apns = await startApnsServer();
  const config = iso.config({
    LC_PUSH_API_URLS: `${fcm.url},${fcmBackup.url}`,
    LC_PUSH_PROJECT_ID: 'demo-app',
    LC_FCM_SERVICE_ACCOUNT: fcm.account.json,
    LC_APNS_API_URL: apns.url,
    LC_APNS_TOPIC: 'com.example.app',
    LC_APNS_KEY: apns.key.pem,
    LC_APNS_KEY_ID: apns.key.keyId,
    LC_APNS_TEAM_ID: apns.key.teamId,
  });
  push = createProviders(config, { logger: silentLogger(), redis: { redis, keys } }).get('push')!;
  const devices = createDeviceRegistry({ redis, keys });
  await devices.register('u-android', { token: 'android-1', platform: 'fcm' });
  await devices.register('u-ios', { token: 'ios-1', platform: 'apns' });
});

afterAll(async () => {
  for (const p of push ?? []) await p.close?.();
  const left = await redis.keys(`${keys.global('')}*`);
  if (left.length) await redis.del(...left);
  await redis.quit();
  await fcm?.close();
  await fcmBackup?.close();
  await apns?.close();
});

describe('FCM with access tokens minted from the service account', () => {
  it('gets a token for a verified assertion, sends with it, and reuses it until it is refused', async () => {
    expect(push.map((p) => p.name)).toEqual(['push-1', 'push-2']);
    for (let i = 0; i < 3; i++)
      expect((await push[0]!.send(message('u-android', `fcm-${i}`))).status).toBe('sent');
    expect(fcm.refused).toEqual([]);
    expect(fcm.issued).toHaveLength(1);
    expect(fcm.messages.map((m) => m.bearer)).toEqual([
      fcm.issued[0],
      fcm.issued[0],
      fcm.issued[0],
    ]);
    expect(fcm.messages[0]).toMatchObject({
      token: 'android-1',
      title: 'Payment declined',
      data: { sendId: 'fcm-0' },
    });

    // The server forgets its tokens (revoked, or expired early): the 401 is retriable and the
    // next call mints a new token.
    fcm.revokeAll();
    const revoked = await push[0]!.send(message('u-android', 'fcm-revoked'));
    expect(revoked).toMatchObject({ status: 'retriable' });
    expect(revoked.status === 'retriable' && revoked.ambiguous).toBeFalsy();
    expect((await push[0]!.send(message('u-android', 'fcm-again'))).status).toBe('sent');
    expect(fcm.issued).toHaveLength(2);
    expect(fcm.messages.at(-1)!.bearer).toBe(fcm.issued[1]);
  });

  it('shares the channel token with the second provider, which takes the message when the first is down', async () => {
    const minted = fcm.issued.length;
    fcm.unavailable = true;
    try {
      expect((await push[0]!.send(message('u-android', 'fcm-down'))).status).toBe('retriable');
      expect((await push[1]!.send(message('u-android', 'fcm-down'))).status).toBe('sent');
    } finally {
      fcm.unavailable = false;
    }
    expect(fcmBackup.messages.map((m) => m.data.sendId)).toEqual(['fcm-down']);
    expect(fcmBackup.messages[0]!.bearer).toBe(fcm.issued.at(-1));
    expect(fcm.issued).toHaveLength(minted);
  });
});

describe('APNs with ES256 provider tokens over HTTP/2', () => {
  it('sends to an iOS device with a token the server verifies, and keeps one token for many sends', async () => {
    for (let i = 0; i < 3; i++)
      expect((await push[0]!.send(message('u-ios', `apns-${i}`))).status).toBe('sent');
    expect(apns.refused).toEqual([]);
    expect(apns.notifications.map((n) => n.device)).toEqual(['ios-1', 'ios-1', 'ios-1']);
    expect(apns.notifications[0]).toMatchObject({
      topic: 'com.example.app',
      payload: { aps: { alert: { title: 'Payment declined', body: 'Update your card' } } },
    });
    expect(apns.tokens.size).toBe(1);
    expect(Math.abs(apns.notifications[0]!.iat - Date.now() / 1000)).toBeLessThan(60);
  });

  it('is refused with a key the server does not know', async () => {
    const other = await startApnsServer();
    const config = iso.config({
      LC_PUSH_API_URLS: fcm.url,
      LC_PUSH_PROJECT_ID: 'demo-app',
      LC_FCM_SERVICE_ACCOUNT: fcm.account.json,
      LC_APNS_API_URL: other.url,
      LC_APNS_TOPIC: 'com.example.app',
      // Our key, their server: the signature does not verify.
      LC_APNS_KEY: apns.key.pem,
      LC_APNS_KEY_ID: apns.key.keyId,
      LC_APNS_TEAM_ID: apns.key.teamId,
    });
    const [p] = createProviders(config, { logger: silentLogger(), redis: { redis, keys } }).get(
      'push',
    )!;
    try {
      expect((await p!.send(message('u-ios', 'apns-forged'))).status).toBe('retriable');
      expect(other.refused).toEqual(['InvalidProviderToken']);
      expect(other.notifications).toEqual([]);
    } finally {
      await p!.close?.();
      await other.close();
    }
  });
});
