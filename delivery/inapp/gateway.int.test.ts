// Two gateway instances on real sockets sharing the real Redis: a send through the in-app
// provider reaches the client of that user on whichever instance holds it; offline
// messages come from the paginated inbox; read receipts become `inapp.read` events and
// `read` outcomes on the deliveries topic, once per message.
import { createRequire } from 'node:module';
import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveryCodec, eventCodec } from '../../platform/avro.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import { isolate } from '../../test/support/isolation.ts';
import { SCHEMA_ID_HEADER } from '../../platform/contracts.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { setupHttpKit } from '../../platform/http.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import { createDeviceRegistry } from '../providers/devices.ts';
import { createInappProvider } from './provider.ts';
import type { OutgoingMessage, Provider } from '../provider.ts';
import { inappGateway, type GatewayFrame } from './gateway.ts';
import { createInbox, type Inbox, type InboxMessage, type InboxPage } from './inbox.ts';
import { inboxContract } from '../../test/support/inbox.contract.ts';
import { createRedisLiveChannel } from './live.ts';
import { signInappToken } from './token.ts';

// `ws` (the server's own WebSocket library) as a real client; it ships no type declarations.
interface ClientSocket {
  on(event: 'message', cb: (data: Buffer) => void): void;
  on(event: 'open', cb: () => void): void;
  on(event: 'error', cb: (err: Error) => void): void;
  on(event: 'unexpected-response', cb: (req: unknown, res: { statusCode: number }) => void): void;
  on(event: 'close', cb: () => void): void;
  send(data: string): void;
  close(): void;
}
const WebSocketClient = createRequire(import.meta.url)('ws') as new (url: string) => ClientSocket;

const SECRET = 'inapp-test-signing-secret';
const EVENTS = 'test.events';
const DELIVERIES = 'test.deliveries';
const iso = isolate('delivery');
const config = iso.config();
const keys = createKeySpace(config.redis.keyPrefix);
const bus = new InMemoryBus(2);
let redis: Redis;
let inbox: Inbox;
let provider: Provider;
const apps: FastifyInstance[] = [];
const urls: string[] = [];
const clients: ClientSocket[] = [];

const metrics = createMetricsRegistry({ defaults: false });

async function startGateway(withMetrics = false): Promise<string> {
  const app = Fastify();
  await setupHttpKit(app);
  await app.register(inappGateway, {
    inappSecret: SECRET,
    redis,
    keys,
    inbox,
    devices: createDeviceRegistry({ redis, keys }),
    publisher: bus.publisher(),
    eventsTopic: EVENTS,
    deliveriesTopic: DELIVERIES,
    logger: silentLogger(),
    ...(withMetrics ? { metrics } : {}),
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  apps.push(app);
  return address;
}

interface Client {
  frames: GatewayFrame[];
  socket: ClientSocket;
  next(pred: (f: GatewayFrame) => boolean, timeoutMs?: number): Promise<GatewayFrame>;
}

async function connect(base: string, userId: string): Promise<Client> {
  const token = signInappToken(SECRET, userId, { ttlMs: 60_000 });
  const socket = new WebSocketClient(
    `${base.replace('http', 'ws')}/v1/inapp/ws?token=${encodeURIComponent(token)}`,
  );
  clients.push(socket);
  const frames: GatewayFrame[] = [];
  const waiters: { pred: (f: GatewayFrame) => boolean; resolve: (f: GatewayFrame) => void }[] = [];
  socket.on('message', (data) => {
    const f = JSON.parse(data.toString('utf8')) as GatewayFrame;
    frames.push(f);
    for (const w of [...waiters]) {
      if (!w.pred(f)) continue;
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(f);
    }
  });
  const client: Client = {
    frames,
    socket,
    next: (pred, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const hit = frames.find(pred);
        if (hit) return resolve(hit);
        const timer = setTimeout(
          () =>
            reject(
              new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(frames)}`),
            ),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (f) => {
            clearTimeout(timer);
            resolve(f);
          },
        });
      }),
  };
  await new Promise<void>((resolve, reject) => {
    socket.on('open', () => resolve());
    socket.on('error', reject);
  });
  // `ready` comes once the instance subscribed to the user's channel.
  await client.next((f) => f.type === 'ready');
  return client;
}

function send(userId: string, sendId: string, title: string): Promise<unknown> {
  const message: OutgoingMessage = {
    sendId,
    ruleId: 'welcome',
    category: 'marketing',
    channel: 'inapp',
    recipient: { userId, locale: 'en', timezone: 'UTC' },
    content: { title, body: `body of ${title}`, url: 'https://app.example.com/start' },
  };
  return provider.send(message);
}

async function getInbox(base: string, userId: string, query = ''): Promise<InboxPage> {
  const token = signInappToken(SECRET, userId, { ttlMs: 60_000 });
  const res = await fetch(`${base}/v1/inapp/inbox?token=${encodeURIComponent(token)}${query}`);
  expect(res.status).toBe(200);
  return (await res.json()) as InboxPage;
}

beforeAll(async () => {
  redis = new Redis(config.redis.url, { maxRetriesPerRequest: 2 });
  inbox = createInbox({ redis, keys }, { maxMessages: 50 });
  provider = createInappProvider({}, { inbox, live: createRedisLiveChannel({ redis, keys }) });
  urls.push(await startGateway(true), await startGateway());
});

afterAll(async () => {
  for (const c of clients) c.close();
  for (const app of apps) await app.close();
  const left = await redis.keys(`${keys.global('')}*`);
  if (left.length) await redis.del(...left);
  await redis.quit();
});

describe('in-app gateway across instances', () => {
  it('delivers a send to the right client, whichever instance holds it', async () => {
    const alice = await connect(urls[0]!, 'alice');
    const bob = await connect(urls[1]!, 'bob');

    expect(await send('bob', 'snd-bob-1', 'For Bob')).toEqual({
      status: 'sent',
      providerMessageId: 'snd-bob-1',
    });
    const toBob = await bob.next((f) => f.type === 'message');
    expect(toBob).toMatchObject({
      type: 'message',
      message: {
        id: 'snd-bob-1',
        title: 'For Bob',
        body: 'body of For Bob',
        url: 'https://app.example.com/start',
        ruleId: 'welcome',
      },
    });

    await send('alice', 'snd-alice-1', 'For Alice');
    expect(await alice.next((f) => f.type === 'message')).toMatchObject({
      message: { id: 'snd-alice-1' },
    });

    // Give a stray cross-delivery time to show up before asserting it did not happen.
    await new Promise((r) => setTimeout(r, 200));
    expect(
      alice.frames
        .filter((f) => f.type === 'message')
        .map((f) => (f as { message: InboxMessage }).message.id),
    ).toEqual(['snd-alice-1']);
    expect(
      bob.frames
        .filter((f) => f.type === 'message')
        .map((f) => (f as { message: InboxMessage }).message.id),
    ).toEqual(['snd-bob-1']);

    // Instance 0 holds alice's socket and pushed her one message.
    const text = await metrics.metrics();
    expect(text).toMatch(/^lifecycle_inapp_connections 1$/m);
    expect(text).toMatch(/^lifecycle_inapp_frames_total\{type="message"\} 1$/m);
  });

  it('reaches every socket of a user connected to both instances', async () => {
    const phone = await connect(urls[0]!, 'carol');
    const laptop = await connect(urls[1]!, 'carol');
    await send('carol', 'snd-carol-1', 'Hi Carol');
    await phone.next((f) => f.type === 'message');
    await laptop.next((f) => f.type === 'message');
  });

  it('keeps messages sent while offline in a paginated inbox, newest first', async () => {
    for (let i = 0; i < 7; i++) await send('dave', `snd-dave-${i}`, `Message ${i}`);
    const first = await getInbox(urls[1]!, 'dave', '&limit=3');
    expect(first.unread).toBe(7);
    const seen = [...first.messages];
    let cursor = first.nextCursor;
    while (cursor) {
      const page = await getInbox(urls[0]!, 'dave', `&limit=3&cursor=${cursor}`);
      expect(page.messages.length).toBeLessThanOrEqual(3);
      seen.push(...page.messages);
      cursor = page.nextCursor;
    }
    expect(seen.map((m) => m.id)).toEqual([6, 5, 4, 3, 2, 1, 0].map((i) => `snd-dave-${i}`));
    // A retried send does not duplicate the inbox entry.
    await send('dave', 'snd-dave-3', 'Message 3');
    expect((await getInbox(urls[0]!, 'dave', '&limit=100')).messages.length).toBe(7);

    // After connecting, the live socket announces the unread count.
    const dave = await connect(urls[0]!, 'dave');
    expect(dave.frames[0]).toEqual({ type: 'ready', userId: 'dave', unread: 7 });
  });

  it('turns read receipts into inapp.read events and read outcomes, once per message', async () => {
    await send('erin', 'snd-erin-1', 'One');
    await send('erin', 'snd-erin-2', 'Two');
    const erin = await connect(urls[1]!, 'erin');
    erin.socket.send(
      JSON.stringify({ type: 'read', ids: ['snd-erin-1', 'snd-erin-1', 'not-mine'] }),
    );
    expect(await erin.next((f) => f.type === 'read')).toEqual({
      type: 'read',
      ids: ['snd-erin-1'],
    });

    const token = signInappToken(SECRET, 'erin', { ttlMs: 60_000 });
    const res = await fetch(`${urls[0]}/v1/inapp/inbox/read?token=${encodeURIComponent(token)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ids: ['snd-erin-1', 'snd-erin-2'] }),
    });
    expect(await res.json()).toEqual({ read: 1, ids: ['snd-erin-2'] });

    const events = bus
      .messages(EVENTS)
      .filter((m) => m.key === 'erin')
      .map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
    expect(events.map((e) => [e.type, e.properties.sendId, e.id])).toEqual([
      ['inapp.read', 'snd-erin-1', 'inapp.read:erin:snd-erin-1'],
      ['inapp.read', 'snd-erin-2', 'inapp.read:erin:snd-erin-2'],
    ]);
    // The funnel's engagement: one `read` outcome per send, however many receipts came.
    const outcomes = bus
      .messages(DELIVERIES)
      .filter((m) => m.key === 'erin')
      .map((m) => deliveryCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
    expect(outcomes.map((o) => [o.sendId, o.status, o.channel, o.ruleId, o.id])).toEqual([
      ['snd-erin-1', 'read', 'inapp', 'welcome', 'snd-erin-1:inapp:read'],
      ['snd-erin-2', 'read', 'inapp', 'welcome', 'snd-erin-2:inapp:read'],
    ]);
    expect(outcomes[0]!.ts).toBe(events[0]!.ts);
    const page = await getInbox(urls[1]!, 'erin');
    expect(page.unread).toBe(0);
    expect(page.messages.every((m) => typeof m.readAt === 'number')).toBe(true);
  });

  it('refuses connections and inbox reads without a valid token', async () => {
    const forged = signInappToken('some-other-secret-value', 'alice', { ttlMs: 60_000 });
    const status = await new Promise<number>((resolve) => {
      const s = new WebSocketClient(
        `${urls[0]!.replace('http', 'ws')}/v1/inapp/ws?token=${encodeURIComponent(forged)}`,
      );
      s.on('unexpected-response', (_req, res) => resolve(res.statusCode));
      s.on('error', () => undefined);
      s.on('open', () => resolve(101));
    });
    expect(status).toBe(401);
    const expired = signInappToken(SECRET, 'alice', { ttlMs: -1000 });
    expect(
      (await fetch(`${urls[0]}/v1/inapp/inbox?token=${encodeURIComponent(expired)}`)).status,
    ).toBe(401);
    expect((await fetch(`${urls[0]}/v1/inapp/inbox`)).status).toBe(401);
    const ok = signInappToken(SECRET, 'alice', { ttlMs: 60_000 });
    expect(
      (await fetch(`${urls[0]}/v1/inapp/inbox`, { headers: { authorization: `Bearer ${ok}` } }))
        .status,
    ).toBe(200);
  });

  it('lets apps register and unregister push devices with their token', async () => {
    const token = encodeURIComponent(signInappToken(SECRET, 'gina', { ttlMs: 60_000 }));
    const post = (body: unknown) =>
      fetch(`${urls[1]}/v1/inapp/devices?token=${token}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect((await post({ token: 'fcm-abc', platform: 'fcm' })).status).toBe(204);
    expect((await post({ token: 'x', platform: 'blackberry' })).status).toBe(400);
    const registry = createDeviceRegistry({ redis, keys });
    expect((await registry.list('gina')).map((d) => [d.token, d.platform])).toEqual([
      ['fcm-abc', 'fcm'],
    ]);
    expect(
      (await fetch(`${urls[0]}/v1/inapp/devices/fcm-abc?token=${token}`, { method: 'DELETE' }))
        .status,
    ).toBe(204);
    expect(
      (await fetch(`${urls[0]}/v1/inapp/devices/fcm-abc?token=${token}`, { method: 'DELETE' }))
        .status,
    ).toBe(404);
    expect(await registry.list('gina')).toEqual([]);
    await registry.register('gina', { token: 'again', platform: 'apns' });
    await registry.erase('gina');
    expect(await registry.list('gina')).toEqual([]);
  });

  it('caps the inbox, dropping the oldest messages, and erases it for a deleted user', async () => {
    const small = createInbox({ redis, keys }, { maxMessages: 3 });
    for (let i = 0; i < 5; i++) {
      await small.add('frank', {
        id: `f-${i}`,
        ruleId: 'r',
        category: 'marketing',
        title: `t${i}`,
        body: '',
        createdAt: 1000 + i,
      });
    }
    const page = await small.page('frank', { limit: 10 });
    expect(page.messages.map((m) => m.id)).toEqual(['f-4', 'f-3', 'f-2']);
    expect(await redis.hlen(keys.user('frank', 'inbox:msg'))).toBe(3);
    await small.markRead('frank', ['f-4']);
    await small.erase('frank');
    expect((await small.page('frank')).messages).toEqual([]);
    expect(
      await redis.exists(
        keys.user('frank', 'inbox'),
        keys.user('frank', 'inbox:msg'),
        keys.user('frank', 'inbox:read'),
      ),
    ).toBe(0);
  });
});

describe('Redis inbox', () => {
  inboxContract(
    (opts) => createInbox({ redis, keys }, opts),
    (name) => `contract-${name}`,
  );
});
