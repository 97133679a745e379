// The send API over HTTP (app.inject), on the in-memory bus, the engine's in-memory state
// store, the shipped templates and the real staff credential with in-memory keys.
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sendCodec } from '../../platform/avro.ts';
import { InMemoryBus, type Publisher } from '../../platform/bus.ts';
import { topics, type SendCommand } from '../../platform/contracts.ts';
import { httpServerOptions, setupHttpKit } from '../../platform/http.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import { silentLogger } from '../../platform/logger.ts';
import { loadMessageTypes } from '../../platform/message-types.ts';
import {
  createMemoryApiKeyStore,
  createMemoryAuditLog,
  staffCredential,
  type AuditLog,
} from '../../access/index.ts';
import { memoryUsers, shippedTemplates } from '../../test/support/send-api.ts';
import { createMemoryIdempotencyStore } from './idempotency.ts';
import { REPLAYED_HEADER, sendRoutes } from './routes.ts';

const PREFIX = 'lc-send-api-test';
const t = topics(PREFIX);
const templates = shippedTemplates();
afterAll(() => templates.close());

interface Api {
  app: FastifyInstance;
  bus: InMemoryBus;
  audit: AuditLog;
  /** Bearer headers of two service keys (two backends) and an analyst key. */
  as: Record<'service' | 'otherService' | 'analyst', Record<string, string>>;
}

const apps: FastifyInstance[] = [];
afterEach(async () => {
  for (const a of apps.splice(0)) await a.close();
});

async function api(publisher?: (bus: InMemoryBus) => Publisher): Promise<Api> {
  const bus = new InMemoryBus(3);
  const keys = createMemoryApiKeyStore();
  const audit = createMemoryAuditLog();
  const now = Date.now();
  const key = async (role: 'service' | 'analyst', name: string) => {
    const secret = `lc_test_${name}_${'x'.repeat(24)}`;
    await keys.put(secret, { name, role, expiresAt: null, createdBy: 'test' }, now);
    return { authorization: `Bearer ${secret}` };
  };
  const app = Fastify({ logger: false, ...httpServerOptions({ trustProxy: 'false' }) });
  apps.push(app);
  await setupHttpKit(app, {
    credentials: { staff: staffCredential({ adminToken: '', keys }) },
    audit,
  });
  const { directory } = await memoryUsers({
    ada: { email: 'ada@example.com', firstName: 'Ada', locale: 'en' },
  });
  await sendRoutes(app, {
    publisher: publisher?.(bus) ?? bus.publisher(),
    topicPrefix: PREFIX,
    maxDataBytes: 4096,
    templates,
    users: directory,
    idempotency: createMemoryIdempotencyStore(),
    messageTypes: loadMessageTypes('rules/message-types.json'),
    logger: silentLogger(),
  });
  await app.ready();
  return {
    app,
    bus,
    audit,
    as: {
      service: await key('service', 'backend'),
      otherService: await key('service', 'billing'),
      analyst: await key('analyst', 'analyst'),
    },
  };
}

/** Every send command on a topic of the in-memory bus. */
async function published(bus: InMemoryBus, topic: string): Promise<SendCommand[]> {
  const out: SendCommand[] = [];
  for (const p of (await bus.endOffsets(topic)).keys())
    for (const m of bus.log(topic, p)) out.push(sendCodec.decode(m.value!));
  return out;
}

const welcome = {
  template: 'welcome',
  userId: 'ada',
  category: 'transactional',
  channels: ['email'],
};

describe('POST /v1/send', () => {
  it('publishes the send and answers 202 with its id once the bus holds it; the change is audited', async () => {
    const { app, bus, audit, as } = await api();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/send',
      headers: as.service,
      payload: welcome,
    });
    expect(res.statusCode).toBe(202);
    const { sends } = res.json<{ sends: { sendId: string }[] }>();
    expect(sends).toEqual([
      { sendId: expect.any(String), userId: 'ada', channels: ['email'], status: 'queued' },
    ]);
    const onTopic = await published(bus, t.sends);
    expect(onTopic.map((s) => s.sendId)).toEqual([sends[0]!.sendId]);
    expect(onTopic[0]).toMatchObject({ ruleId: 'api', origin: expect.stringMatching(/^api:key_/) });
    expect(await published(bus, t.sendsHigh)).toEqual([]);
    const { entries } = await audit.query({ limit: 10 });
    expect(entries).toMatchObject([
      {
        action: 'send.create',
        target: `send:${sends[0]!.sendId}`,
        role: 'service',
        after: { userId: 'ada', template: 'welcome', channels: ['email'], priority: 'normal' },
      },
    ]);
    // The audit log keeps who was sent what, never the data.
    expect(JSON.stringify(entries)).not.toContain('ada@example.com');
  });

  it('carries the message type on the send command', async () => {
    const { app, bus, as } = await api();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/send',
      headers: as.service,
      payload: { ...welcome, messageType: 'billing' },
    });
    expect(res.statusCode).toBe(202);
    expect((await published(bus, t.sends)).map((s) => s.messageType)).toEqual(['billing']);
  });

  it('publishes priority high to the high-priority sends topic', async () => {
    const { app, bus, as } = await api();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/send',
      headers: as.service,
      payload: { ...welcome, priority: 'high' },
    });
    expect(res.statusCode).toBe(202);
    expect(await published(bus, t.sends)).toEqual([]);
    expect((await published(bus, t.sendsHigh)).map((s) => s.priority)).toEqual([1000]);
  });

  it('replays the first answer to a retry with the same Idempotency-Key, publishing nothing more; refuses another body with 422', async () => {
    const { app, bus, as } = await api();
    const send = (payload: object, headers = as.service) =>
      app.inject({
        method: 'POST',
        url: '/v1/send',
        headers: { ...headers, 'idempotency-key': 'welcome:ada' },
        payload,
      });
    const first = await send(welcome);
    expect(first.statusCode).toBe(202);
    expect(first.headers[REPLAYED_HEADER]).toBeUndefined();
    // The same body, its keys in another order.
    const retry = await send({
      channels: ['email'],
      category: 'transactional',
      userId: 'ada',
      template: 'welcome',
    });
    expect(retry.statusCode).toBe(202);
    expect(retry.headers[REPLAYED_HEADER]).toBe('true');
    expect(retry.json()).toEqual(first.json());
    expect(await published(bus, t.sends)).toHaveLength(1);

    const other = await send({ ...welcome, template: 'trial_ending' });
    expect(other.statusCode).toBe(422);
    expect(other.json()).toMatchObject({
      code: 'LC_ERR_IDEMPOTENCY_MISMATCH',
      field: 'Idempotency-Key',
      message: expect.stringMatching(/used within the last 24 hours for another request/),
    });
    // Another backend's key of the same name is its own.
    const theirs = await send({ ...welcome, template: 'trial_ending' }, as.otherService);
    expect(theirs.statusCode).toBe(202);
    expect(theirs.json().sends[0].sendId).not.toBe(first.json().sends[0].sendId);
    expect(await published(bus, t.sends)).toHaveLength(2);
  });

  it('answers 409 to a request whose key is in progress, and publishes once', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    // The bus acknowledges the first publish only when the test says so.
    const { app, bus, as } = await api((b) => ({
      publish: async (topic, messages) => {
        await held;
        await b.publisher().publish(topic, messages);
      },
    }));
    const request = () =>
      app.inject({
        method: 'POST',
        url: '/v1/send',
        headers: { ...as.service, 'idempotency-key': 'race' },
        payload: welcome,
      });
    const first = request();
    // The first holds the key while its publish waits.
    await new Promise((r) => setTimeout(r, 50));
    const second = await request();
    expect(second.statusCode).toBe(409);
    expect(second.json()).toMatchObject({ code: 'LC_ERR_IDEMPOTENCY_IN_PROGRESS' });
    release();
    expect((await first).statusCode).toBe(202);
    const third = await request();
    expect(third.statusCode).toBe(202);
    expect(third.headers[REPLAYED_HEADER]).toBe('true');
    expect(await published(bus, t.sends)).toHaveLength(1);
  });

  it('frees the key when the publish fails, so the retry sends (with the same sendId)', async () => {
    let failing = true;
    const { app, bus, as } = await api((b) => ({
      publish: async (topic, messages) => {
        // As the Kafka publisher refuses when the broker does not acknowledge.
        if (failing)
          throw new LifecycleError(ErrorCodes.KafkaPublish, 'publish failed: broker away', {
            retriable: true,
            status: 503,
          });
        await b.publisher().publish(topic, messages);
      },
    }));
    const request = () =>
      app.inject({
        method: 'POST',
        url: '/v1/send',
        headers: { ...as.service, 'idempotency-key': 'flaky' },
        payload: welcome,
      });
    const failed = await request();
    expect(failed.statusCode).toBe(503);
    expect(failed.json()).toMatchObject({ code: 'LC_ERR_KAFKA_PUBLISH' });
    failing = false;
    const retried = await request();
    expect(retried.statusCode).toBe(202);
    expect(retried.headers[REPLAYED_HEADER]).toBeUndefined();
    expect(await published(bus, t.sends)).toHaveLength(1);
  });

  it.each([
    [
      { ...welcome, template: 'welcom' },
      422,
      'LC_ERR_UNKNOWN_TEMPLATE',
      'template',
      /did you mean "welcome"/,
    ],
    [
      { ...welcome, channels: ['sms'] },
      422,
      'LC_ERR_TEMPLATE_CHANNEL',
      'channels',
      /has no sms content/,
    ],
    [{ ...welcome, userId: 'nobody' }, 422, 'LC_ERR_UNKNOWN_USER', 'userId', /no user "nobody"/],
    [
      { template: 'welcome', category: 'transactional' },
      400,
      'LC_ERR_BAD_REQUEST',
      'userId',
      /needs a recipient/,
    ],
    [
      { ...welcome, to: { email: 'x@example.com' } },
      400,
      'LC_ERR_BAD_REQUEST',
      'to',
      /both userId and to/,
    ],
    [
      { ...welcome, category: 'promo' },
      400,
      'LC_ERR_BAD_REQUEST',
      'category',
      /one of transactional, marketing/,
    ],
    [
      { ...welcome, priority: 'urgent' },
      400,
      'LC_ERR_BAD_REQUEST',
      'priority',
      /one of high, normal/,
    ],
    [
      { ...welcome, messageType: 'recipts' },
      400,
      'LC_ERR_UNKNOWN_MESSAGE_TYPE',
      'messageType',
      /"recipts" is not a declared message type \(product_news, tips/,
    ],
    [
      { ...welcome, messageType: 'tips' },
      400,
      'LC_ERR_UNKNOWN_MESSAGE_TYPE',
      'messageType',
      /"tips" is marketing, the message transactional/,
    ],
    [
      { ...welcome, category: 'marketing', messageType: 'digest', channels: ['email', 'inapp'] },
      400,
      'LC_ERR_UNKNOWN_MESSAGE_TYPE',
      'channels',
      /"digest" is not sent on inapp/,
    ],
    [
      { ...welcome, data: { blob: 'x'.repeat(5000) } },
      413,
      'LC_ERR_PAYLOAD_TOO_LARGE',
      'data',
      /LC_SEND_MAX_DATA_BYTES/,
    ],
  ])('refuses %j with %i %s', async (payload, status, code, field, message) => {
    const { app, bus, as } = await api();
    const res = await app.inject({ method: 'POST', url: '/v1/send', headers: as.service, payload });
    expect(res.statusCode).toBe(status);
    expect(res.json()).toEqual({ code, field, message: expect.stringMatching(message) });
    expect(await published(bus, t.sends)).toEqual([]);
  });

  it('refuses a malformed Idempotency-Key, and roles other than service and admin', async () => {
    const { app, as } = await api();
    const badKey = await app.inject({
      method: 'POST',
      url: '/v1/send',
      headers: { ...as.service, 'idempotency-key': 'k'.repeat(256) },
      payload: welcome,
    });
    expect(badKey.statusCode).toBe(400);
    expect(badKey.json()).toMatchObject({ field: 'Idempotency-Key' });
    const analyst = await app.inject({
      method: 'POST',
      url: '/v1/send',
      headers: as.analyst,
      payload: welcome,
    });
    expect(analyst.statusCode).toBe(403);
    expect(
      (await app.inject({ method: 'POST', url: '/v1/send', payload: welcome })).statusCode,
    ).toBe(401);
  });
});

describe('POST /v1/send/batch', () => {
  it('publishes the valid messages in one go and answers one result per message, in order', async () => {
    const { app, bus, audit, as } = await api();
    const payload = {
      messages: [
        welcome,
        { ...welcome, template: 'nope' },
        { template: 'welcome', to: { email: 'guest@example.com' }, category: 'transactional' },
        { ...welcome, priority: 'high' },
        'not a message',
      ],
    };
    const post = () =>
      app.inject({
        method: 'POST',
        url: '/v1/send/batch',
        headers: { ...as.service, 'idempotency-key': 'digest-2026-12-07' },
        payload,
      });
    const res = await post();
    expect(res.statusCode).toBe(202);
    const { sends } = res.json<{ sends: Record<string, unknown>[] }>();
    expect(sends.map((s) => [s.index, s.status, s.code ?? null, s.field ?? null])).toEqual([
      [0, 'queued', null, null],
      [1, 'rejected', 'LC_ERR_UNKNOWN_TEMPLATE', 'messages[1].template'],
      [2, 'queued', null, null],
      [3, 'queued', null, null],
      [4, 'rejected', 'LC_ERR_BAD_REQUEST', 'messages[4]'],
    ]);
    expect((await published(bus, t.sends)).map((s) => s.sendId).sort()).toEqual(
      [sends[0]!.sendId, sends[2]!.sendId].sort(),
    );
    expect((await published(bus, t.sendsHigh)).map((s) => s.sendId)).toEqual([sends[3]!.sendId]);
    expect((await audit.query({ limit: 10 })).entries).toMatchObject([
      { action: 'send.batch', after: { rejected: 2 } },
    ]);

    // The retry gets the same results, sendIds included, and sends nothing more.
    const retry = await post();
    expect(retry.headers[REPLAYED_HEADER]).toBe('true');
    expect(retry.json()).toEqual(res.json());
    expect(await published(bus, t.sends)).toHaveLength(2);
  });

  it('sends nothing when no message is valid, and says why for each', async () => {
    const { app, bus, as } = await api();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/send/batch',
      headers: as.service,
      payload: {
        messages: [
          { ...welcome, template: 'nope' },
          { ...welcome, userId: 'nobody' },
        ],
      },
    });
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({
      code: 'LC_ERR_UNKNOWN_TEMPLATE',
      message: expect.stringMatching(/^no message of the batch was accepted; no template "nope"/),
      sends: [
        { index: 0, status: 'rejected', code: 'LC_ERR_UNKNOWN_TEMPLATE' },
        { index: 1, status: 'rejected', code: 'LC_ERR_UNKNOWN_USER' },
      ],
    });
    expect(await published(bus, t.sends)).toEqual([]);
  });

  it('refuses an envelope without 1 to 1000 messages, or with other fields', async () => {
    const { app, as } = await api();
    const post = (payload: object) =>
      app.inject({ method: 'POST', url: '/v1/send/batch', headers: as.service, payload });
    for (const [payload, message] of [
      [{ messages: [] }, /1 to 1000 messages/],
      [{ messages: Array.from({ length: 1001 }, () => welcome) }, /got 1001\): split/],
      [{ messages: [welcome], dryRun: true }, /unknown field dryRun/],
    ] as const) {
      const res = await post(payload);
      expect(res.statusCode).toBe(400);
      expect(res.json().message).toMatch(message);
    }
  });
});
