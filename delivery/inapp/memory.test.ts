// The in-memory inbox and live channel (embedded demo) behave like the Redis ones: the
// shared inbox contract, and the gateway end to end over fastify's in-process WebSocket.
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveryCodec, eventCodec } from '../../platform/avro.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import { SCHEMA_ID_HEADER } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createInappProvider } from '../providers/inapp.ts';
import type { OutgoingMessage } from '../providers/types.ts';
import { inappGateway, type GatewayFrame } from './gateway.ts';
import { inboxContract } from './inbox.contract.ts';
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
  const bus = new InMemoryBus(1);
  const inbox = createMemoryInbox();
  const live = createMemoryLiveChannel();
  const provider = createInappProvider({}, { inbox, live });
  let app: FastifyInstance;

  beforeAll(async () => {
    app = Fastify();
    // Registered at the root (the gateway then reuses it) so the test can use app.injectWS.
    await app.register(websocket);
    await app.register(inappGateway, {
      signingSecret: SECRET,
      inbox,
      live,
      publisher: bus.publisher(),
      // No deliveriesTopic: read outcomes go to the deliveries topic beside it (demo.deliveries).
      eventsTopic: 'demo.events',
      logger: silentLogger(),
    });
    await app.ready();
  });
  afterAll(() => app.close());

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

  it('needs deliveriesTopic when it cannot be derived from eventsTopic', async () => {
    const other = Fastify();
    await other.register(websocket);
    const opts = { signingSecret: SECRET, inbox, live: createMemoryLiveChannel(), publisher: bus.publisher(), logger: silentLogger() };
    await expect(other.register(inappGateway, { ...opts, eventsTopic: 'ev' }).ready()).rejects.toThrow(
      'in-app gateway: pass deliveriesTopic for read outcomes; it is only derived from an eventsTopic named <prefix>.events, not "ev"',
    );
    await other.close();
    const explicit = Fastify();
    await explicit.register(websocket);
    await explicit.register(inappGateway, { ...opts, eventsTopic: 'ev', deliveriesTopic: 'dv' }).ready();
    await explicit.close();
  });
});
