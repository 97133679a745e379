// The in-memory inbox and live channel (embedded demo) behave like the Redis ones: the
// shared inbox contract, and the gateway end to end over fastify's in-process WebSocket.
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveryCodec, eventCodec } from '../../platform/avro.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import { SCHEMA_ID_HEADER } from '../../platform/contracts.ts';
import { setupHttpKit } from '../../platform/http.ts';
import { loadConfig } from '../../platform/config.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createTrackingLinks, tokenOf } from '../links.ts';
import { preferencesLinkOf } from './index.ts';
import { createInappProvider } from './provider.ts';
import type { OutgoingMessage } from '../provider.ts';
import { inappGateway, type GatewayFrame } from './gateway.ts';
import { inboxContract } from '../../test/support/inbox.contract.ts';
import { createMemoryInbox } from './inbox.ts';
import { createMemoryLiveChannel } from './live.ts';
import { signInappToken } from './token.ts';

describe('in-memory inbox', () => {
  inboxContract(
    (opts) => createMemoryInbox(opts),
    (name) => name,
  );
});

describe('gateway on the in-memory twins', () => {
  const SECRET = 'memory-gateway-secret';
  const config = loadConfig({}, { 'http.publicBaseUrl': 'https://t.example.com' });
  const bus = new InMemoryBus(1);
  const inbox = createMemoryInbox();
  const live = createMemoryLiveChannel();
  const provider = createInappProvider({}, { inbox, live });
  let app: FastifyInstance;

  beforeAll(async () => {
    app = Fastify();
    await setupHttpKit(app);
    // Registered at the root (the gateway then reuses it) so the test can use app.injectWS.
    await app.register(websocket);
    await app.register(inappGateway, {
      inappSecret: SECRET,
      inbox,
      live,
      publisher: bus.publisher(),
      eventsTopic: 'demo.events',
      deliveriesTopic: 'demo.deliveries',
      preferencesLink: preferencesLinkOf(config),
      logger: silentLogger(),
    });
    await app.ready();
  });
  afterAll(() => app.close());

  it("links the app's settings to the signed preference page of the token's user, the emails' footer page", async () => {
    const token = encodeURIComponent(signInappToken(SECRET, 'ada', { ttlMs: 60_000 }));
    const res = await app.inject({
      method: 'GET',
      url: `/v1/inapp/preferences-link?token=${token}`,
    });
    expect(res.statusCode).toBe(200);
    const { url } = res.json<{ url: string }>();
    expect(url.startsWith('https://t.example.com/p?t=')).toBe(true);
    const links = createTrackingLinks({
      publicBaseUrl: config.http.publicBaseUrl,
      signingSecret: config.auth.signingSecret,
    });
    expect(links.readPreferences(tokenOf(url), Date.now())).toMatchObject({
      status: 'valid',
      value: { userId: 'ada' },
    });
    // The same link an email's footer carries for this user.
    expect(url.split('?t=')[0]).toBe(links.preferences('ada', Date.now()).split('?t=')[0]);
    expect(
      (await app.inject({ method: 'GET', url: '/v1/inapp/preferences-link' })).statusCode,
    ).toBe(401);
  });

  const message = (userId: string, sendId: string): OutgoingMessage => ({
    sendId,
    ruleId: 'welcome',
    category: 'marketing',
    channel: 'inapp',
    recipient: { userId, locale: 'en', timezone: 'UTC' },
    content: { title: `Hi ${userId}`, body: 'Welcome' },
  });

  interface TestSocket {
    on(event: 'message', cb: (data: Buffer) => void): void;
    send(data: string): void;
    terminate(): void;
  }

  async function connect(userId: string) {
    const frames: GatewayFrame[] = [];
    const token = encodeURIComponent(signInappToken(SECRET, userId, { ttlMs: 60_000 }));
    const socket = (await app.injectWS(
      `/v1/inapp/ws?token=${token}`,
      {},
      {
        onInit: (ws: TestSocket) =>
          ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString()) as GatewayFrame)),
      },
    )) as TestSocket;
    await expect.poll(() => frames.some((f) => f.type === 'ready')).toBe(true);
    return { socket, frames };
  }

  it('pushes a send to the connected user only, keeps it in the inbox, and turns reads into events', async () => {
    const ann = await connect('ann');
    const ben = await connect('ben');
    expect(await provider.send(message('ann', 's-ann'))).toEqual({
      status: 'sent',
      providerMessageId: 's-ann',
    });
    await expect.poll(() => ann.frames.filter((f) => f.type === 'message').length).toBe(1);
    expect(ann.frames.find((f) => f.type === 'message')).toMatchObject({
      message: { id: 's-ann', title: 'Hi ann' },
    });
    expect(ben.frames.some((f) => f.type === 'message')).toBe(false);

    // Offline user: only the inbox has it.
    await provider.send(message('cid', 's-cid'));
    const token = encodeURIComponent(signInappToken(SECRET, 'cid', { ttlMs: 60_000 }));
    const page = await app.inject({ method: 'GET', url: `/v1/inapp/inbox?token=${token}` });
    expect(page.json()).toMatchObject({
      messages: [{ id: 's-cid', readAt: null }],
      nextCursor: null,
      unread: 1,
    });

    ann.socket.send(JSON.stringify({ type: 'read', ids: ['s-ann'] }));
    await expect.poll(() => ann.frames.some((f) => f.type === 'read')).toBe(true);
    const events = bus
      .messages('demo.events')
      .map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
    expect(events.map((e) => [e.type, e.userId, e.properties.sendId])).toEqual([
      ['inapp.read', 'ann', 's-ann'],
    ]);
    const outcomes = bus
      .messages('demo.deliveries')
      .map((m) => deliveryCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
    expect(outcomes.map((o) => [o.id, o.status, o.userId, o.sendId, o.channel])).toEqual([
      ['s-ann:inapp:read', 'read', 'ann', 's-ann', 'inapp'],
    ]);
    ann.socket.terminate();
    ben.socket.terminate();
  });

  it('refuses sockets without a valid token', async () => {
    await expect(app.injectWS('/v1/inapp/ws?token=forged.1.x')).rejects.toThrow(/401/);
  });

  it('leaves a message unread when its read receipt could not be published, so the retried receipt counts', async () => {
    const flaky = new InMemoryBus(1);
    const inner = flaky.publisher();
    let failures = 1;
    const other = Fastify();
    await setupHttpKit(other);
    await other.register(websocket);
    const own = createMemoryInbox();
    await other.register(inappGateway, {
      inappSecret: SECRET,
      inbox: own,
      live: createMemoryLiveChannel(),
      publisher: {
        ...inner,
        publish: async (topic, messages) => {
          if (failures-- > 0) throw new Error('broker unavailable');
          return inner.publish(topic, messages);
        },
      },
      eventsTopic: 'ev',
      deliveriesTopic: 'dv',
      logger: silentLogger(),
    });
    await createInappProvider({}, { inbox: own, live: createMemoryLiveChannel() }).send(
      message('dee', 's-dee'),
    );
    const token = encodeURIComponent(signInappToken(SECRET, 'dee', { ttlMs: 60_000 }));
    const read = () =>
      other.inject({
        method: 'POST',
        url: `/v1/inapp/inbox/read?token=${token}`,
        payload: { ids: ['s-dee'] },
      });

    expect((await read()).statusCode).toBe(503);
    expect(await own.unread('dee')).toBe(1);
    expect((await read()).json()).toEqual({ read: 1, ids: ['s-dee'] });
    expect(await own.unread('dee')).toBe(0);
    expect((await read()).json()).toEqual({ read: 0, ids: [] });
    expect(
      flaky
        .messages('ev')
        .map((m) => eventCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]).properties.sendId),
    ).toEqual(['s-dee']);
    expect(flaky.messages('dv')).toHaveLength(1);
    await other.close();
  });
});
