// The end user's pages in a real browser (Debian chromium via playwright-core): the
// unsubscribe confirmation from an email's link, then the preference page it links to.
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventCodec } from '../../platform/avro.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import { loadConfig } from '../../platform/config.ts';
import { topics } from '../../platform/contracts.ts';
import { adminCredential, setupHttpKit } from '../../platform/http.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createRedis, type RedisDeps } from '../../platform/redis.ts';
import { deliveryRoutes } from '../index.ts';
import { createTrackingLinks, type MessageRef } from '../links.ts';
import { createPreferencesStore } from './store.ts';
import { isolate } from '../../test/support/isolation.ts';
import { watchCsp } from '../../test/support/csp-pages.ts';

const iso = isolate('dlv-pages');
const id = iso.id;
let app: FastifyInstance;
let browser: Browser;
let redis: RedisDeps;
const bus = new InMemoryBus(1);
let base = '';

beforeAll(async () => {
  const config0 = iso.config();
  redis = createRedis(config0.redis, silentLogger());
  // Bind first, then build the config whose public base URL is this server.
  const probe = Fastify();
  await probe.listen({ port: 0, host: '127.0.0.1' });
  const port = (probe.server.address() as AddressInfo).port;
  await probe.close();
  base = `http://127.0.0.1:${port}`;
  const config = { ...config0, http: { ...config0.http, publicBaseUrl: base } };
  app = Fastify();
  await setupHttpKit(app, {
    credentials: { staff: adminCredential(config.auth.adminToken) },
    // Staff changes are audited; what they record is tested in routes.test.ts.
    audit: { append: async () => 'audit-entry' },
  });
  await app.register(deliveryRoutes, {
    config,
    redis,
    publisher: bus.publisher(),
    logger: silentLogger(),
  });
  await app.listen({ port, host: '127.0.0.1' });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});

afterAll(async () => {
  await browser?.close();
  await app?.close();
  const keys = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
  if (keys.length) await redis.redis.del(...keys);
  redis.redis.disconnect();
});

// Every page runs under its Content-Security-Policy, and nothing it does is refused by it.
const csp = watchCsp(() => browser);
const newPage = () => csp.newPage();
afterEach(() => {
  expect(csp.problems()).toEqual([]);
});

describe('unsubscribe and preference pages', () => {
  it('unsubscribes from the email link after confirmation, then manages preferences on the signed page', async () => {
    const config = loadConfig(iso.env, { 'http.publicBaseUrl': base });
    const links = createTrackingLinks({
      publicBaseUrl: base,
      signingSecret: config.auth.signingSecret,
    });
    const store = createPreferencesStore(redis);
    const userId = `page-user-${id}`;
    await store.apply(
      userId,
      {
        records: [
          {
            category: 'marketing',
            channel: 'email',
            record: { granted: true, at: Date.now() - 1000, source: 'signup_form' },
          },
          {
            category: 'product_updates',
            channel: 'email',
            record: { granted: true, at: Date.now() - 1000, source: 'signup_form' },
          },
        ],
      },
      { source: 'test', at: Date.now() },
    );
    const ref: MessageRef = {
      sendId: `s-${id}`,
      userId,
      ruleId: 'winback',
      channel: 'email',
      variant: null,
      category: 'marketing',
    };

    const page = await newPage();
    // Opening the link (as a link scanner would) changes nothing.
    await page.goto(links.unsubscribe(ref, Date.now()));
    await expect.poll(() => page.locator('h1').textContent()).toBe('Unsubscribe?');
    expect((await store.get(userId)).consents.marketing?.email?.granted).toBe(true);

    await page.getByRole('button', { name: 'Unsubscribe' }).click();
    await page.waitForSelector('text=You are unsubscribed');
    expect(await page.getByRole('status').textContent()).toContain('news and offers by Email');
    expect((await store.get(userId)).consents.marketing?.email).toMatchObject({
      granted: false,
      source: 'unsubscribe_page',
    });
    const events = bus
      .messages(topics(iso.topicPrefix).events)
      .map((m) => eventCodec.decode(m.value!));
    expect(events).toMatchObject([
      {
        type: 'message_unsubscribed',
        userId,
        source: 'tracker',
        properties: { sendId: ref.sendId, category: 'marketing', channel: 'email' },
      },
    ]);

    // On to the preference page.
    await page.getByRole('link', { name: 'Manage your preferences' }).click();
    await page.waitForSelector('text=Your message preferences');
    const marketingEmail = page.getByLabel('News and offers by Email');
    const updatesEmail = page.getByLabel('Product updates by Email');
    const marketingSms = page.getByLabel('News and offers by SMS');
    expect(await marketingEmail.isChecked()).toBe(false);
    expect(await updatesEmail.isChecked()).toBe(true);
    expect(await marketingSms.isChecked()).toBe(false);
    await marketingSms.check();
    await updatesEmail.uncheck();
    // The message types a user may switch, with their labels: tips (opt-in) off until ticked,
    // product news on by default; billing is not offered.
    const tipsEmail = page.getByLabel('Tips and tutorials by Email');
    const newsEmail = page.getByLabel('Product news by Email');
    expect(await tipsEmail.isChecked()).toBe(false);
    expect(await newsEmail.isChecked()).toBe(true);
    expect(await page.getByLabel(/^Billing by/).count()).toBe(0);
    await tipsEmail.check();
    await newsEmail.uncheck();
    await page.getByRole('button', { name: 'Save preferences' }).click();
    await page.waitForSelector('text=Your preferences were saved.');
    const prefs = await store.get(userId);
    expect(prefs.types).toEqual({
      tips: { email: { granted: true, at: expect.any(Number), source: 'preference_page' } },
      product_news: {
        email: { granted: false, at: expect.any(Number), source: 'preference_page' },
      },
    });
    expect(await page.getByLabel('Tips and tutorials by Email').isChecked()).toBe(true);
    expect(await page.getByLabel('Product news by Email').isChecked()).toBe(false);
    expect(prefs.consents.marketing?.sms).toMatchObject({
      granted: true,
      source: 'preference_page',
    });
    expect(prefs.consents.product_updates?.email).toMatchObject({
      granted: false,
      source: 'preference_page',
    });
    expect(prefs.consents.marketing?.email).toMatchObject({
      granted: false,
      source: 'unsubscribe_page',
    });
    expect(await page.getByLabel('News and offers by SMS').isChecked()).toBe(true);

    await page.getByLabel(/Unsubscribe from everything/).check();
    await page.getByRole('button', { name: 'Save preferences' }).click();
    await page.waitForSelector('text=Your preferences were saved.');
    expect((await store.get(userId)).unsubscribedAll).toMatchObject({ source: 'preference_page' });

    // A tampered link opens nothing.
    const good = new URL(links.preferences(userId, Date.now()));
    const t = good.searchParams.get('t')!;
    good.searchParams.set('t', `${t.slice(0, 5)}${t[5] === 'x' ? 'y' : 'x'}${t.slice(6)}`);
    const res = await page.goto(good.toString());
    expect(res?.status()).toBe(400);
    await page.waitForSelector('text=This link is not valid');
    await page.close();
  });
});
