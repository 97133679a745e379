// The message log API over app.inject, on chDB (the embedded engine, in-process) with the
// tables the sink writes: list and detail, coded refusals that say what to fix, and resends:
// one new send command on the sends topic per request key, through the policy chain (the
// answer says when consent will refuse it), audited without the message's content.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import { createPolicyPreview } from '../delivery/policy/preview.ts';
import { sendCodec, SCHEMA_ID_HEADER } from '../platform/avro.ts';
import { InMemoryBus } from '../platform/bus.ts';
import {
  topics as topicNames,
  type DeliveryOutcome,
  type MessageRecord,
  type SendCommand,
} from '../platform/contracts.ts';
import { adminCredential, setupHttpKit, type AuditRecord } from '../platform/http.ts';
import { messageRoutes } from './messages-routes.ts';
import { deliveryRow, ensureSchema, messageRow, sendRow } from './schema.ts';
import { createChdbStore, type EngineAnalyticsStore } from './store.ts';

const TOKEN = 'test-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };
// The real clock: chDB applies the body TTL by it.
const NOW = Date.now();
const DB = 'lc_msg_routes';
const T = topicNames('msgroutes');

const send = (sendId: string, over: Partial<SendCommand> = {}): SendCommand => ({
  sendId,
  ruleId: 'welcome',
  userId: 'ada',
  category: 'marketing',
  priority: 40,
  template: 'welcome',
  channels: ['email'],
  variant: null,
  holdout: false,
  triggeredBy: { eventId: 'e1', eventType: 'user_registered' },
  createdAt: NOW - 3_600_000,
  expiresAt: null,
  data: { user: { email: 'ada@example.com', phone: '+15550100', firstName: 'Ada' } },
  ...over,
});

const logged = (s: SendCommand, channel: 'email' | 'sms'): MessageRecord => ({
  id: `${s.sendId}:${channel}`,
  sendId: s.sendId,
  userId: s.userId,
  ruleId: s.ruleId,
  campaignId: null,
  category: s.category,
  channel,
  template: s.template,
  templateVersion: 3,
  locale: 'en',
  to: channel === 'email' ? 'ada@example.com' : '+15550100',
  subject: channel === 'email' ? 'Welcome, Ada' : null,
  html: channel === 'email' ? '<p>Secret-ish welcome body</p>' : null,
  text: channel === 'email' ? 'Secret-ish welcome body' : null,
  content: channel === 'sms' ? { body: 'Welcome, Ada' } : {},
  data: s.data,
  origin: null,
  ts: s.createdAt + 1000,
});

const outcome = (s: SendCommand, channel: 'email' | 'sms', status: string): DeliveryOutcome => ({
  id: `${s.sendId}:${channel}:${status}`,
  sendId: s.sendId,
  ruleId: s.ruleId,
  userId: s.userId,
  channel,
  status: status as DeliveryOutcome['status'],
  reason: status === 'suppressed' ? 'no_opt_in:marketing:email' : null,
  provider: status === 'sent' ? 'smtp-1' : null,
  attempt: 1,
  ts: s.createdAt + 1000,
  variant: null,
  holdout: false,
});

const marketing = send('welcome:ada:1');
const receipt = send('receipt:ada:2', {
  ruleId: 'receipt',
  category: 'transactional',
  channels: ['email', 'sms'],
  createdAt: NOW - 1_800_000,
});
const stopped = send('winback:ada:3', { ruleId: 'winback', createdAt: NOW - 600_000 });

describe('message log routes', () => {
  let app: FastifyInstance;
  let dir: string;
  let store: EngineAnalyticsStore;
  let bus: InMemoryBus;
  const audit: AuditRecord[] = [];
  const stores = createMemoryDeliveryStores();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lc-msg-routes-'));
    store = await createChdbStore({ path: dir });
    await ensureSchema(store, DB, { payloadTtlDays: 30, messageBodyTtlDays: 30 });
    await store.insert(`${DB}.sends`, [marketing, receipt, stopped].map(sendRow));
    await store.insert(
      `${DB}.messages`,
      [logged(marketing, 'email'), logged(receipt, 'email'), logged(receipt, 'sms')].map(
        messageRow,
      ),
    );
    await store.insert(
      `${DB}.deliveries`,
      [
        outcome(marketing, 'email', 'sent'),
        outcome(receipt, 'email', 'sent'),
        outcome(receipt, 'sms', 'sent'),
        outcome(stopped, 'email', 'suppressed'),
      ].map(deliveryRow),
    );
    bus = new InMemoryBus(1);
    app = Fastify();
    await setupHttpKit(app, {
      credentials: { staff: adminCredential(TOKEN) },
      openapi: { info: { title: 't', version: '1' } },
      audit: {
        append: async (record) => {
          audit.push(record);
          return String(audit.length);
        },
      },
    });
    await app.register(messageRoutes, {
      analytics: async () => ({ store, database: DB }),
      publisher: bus.publisher(),
      sendsTopic: T.sends,
      bodyTtlDays: 30,
      policyPreview: createPolicyPreview(stores.preferences),
      now: () => NOW,
    });
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    audit.length = 0;
  });

  const published = () =>
    bus.messages(T.sends).map((m) => sendCodec.decode(m.value!, m.headers[SCHEMA_ID_HEADER]));
  const resend = (sendId: string, body?: object, key?: string) =>
    app.inject({
      method: 'POST',
      url: `/v1/messages/${encodeURIComponent(sendId)}/resend`,
      headers: { ...auth, ...(key ? { 'idempotency-key': key } : {}) },
      ...(body ? { payload: body } : {}),
    });

  it('lists a user’s messages newest first, page by page, and says what is missing', async () => {
    const first = await app.inject({
      method: 'GET',
      url: '/v1/messages?userId=ada&limit=2',
      headers: auth,
    });
    expect(first.statusCode).toBe(200);
    const page = first.json() as { messages: { sendId: string; channel: string }[]; next: string };
    expect(page.messages.map((m) => `${m.sendId}/${m.channel}`)).toEqual([
      'winback:ada:3/email',
      'receipt:ada:2/sms',
    ]);
    const second = await app.inject({
      method: 'GET',
      url: `/v1/messages?userId=ada&limit=2&cursor=${page.next}`,
      headers: auth,
    });
    expect(
      (second.json() as { messages: { sendId: string; channel: string }[] }).messages.map(
        (m) => `${m.sendId}/${m.channel}`,
      ),
    ).toEqual(['receipt:ada:2/email', 'welcome:ada:1/email']);
    expect(second.json()).toMatchObject({ next: null });

    for (const [url, field, message] of [
      ['/v1/messages', 'userId', /give userId, to \(a recipient address\) or sendId/],
      ['/v1/messages?userId=ada&since=yesterday', 'since', /not an ISO time or epoch/],
      ['/v1/messages?userId=ada&cursor=bogus', 'cursor', /cursor is not one this API gave out/],
      ['/v1/messages?userId=ada&limit=500', 'limit', /limit must be <= 100/],
    ] as const) {
      const res = await app.inject({ method: 'GET', url, headers: auth });
      expect(res.statusCode, url).toBe(400);
      expect(res.json(), url).toMatchObject({ code: 'LC_ERR_BAD_REQUEST', field });
      expect(res.json().message, url).toMatch(message);
    }
    // Search by address, any case.
    const byAddress = await app.inject({
      method: 'GET',
      url: `/v1/messages?to=${encodeURIComponent('ADA@example.com')}`,
      headers: auth,
    });
    expect(
      (byAddress.json() as { messages: { sendId: string }[] }).messages.map((m) => m.sendId),
    ).toEqual(['receipt:ada:2', 'welcome:ada:1']);
  });

  it('shows one send with its content, or says there is none', async () => {
    const res = await app.inject({
      method: 'GET',
      url: `/v1/messages/${marketing.sendId}`,
      headers: auth,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      sendId: marketing.sendId,
      userId: 'ada',
      channels: [
        {
          channel: 'email',
          status: 'sent',
          to: 'ada@example.com',
          templateVersion: 3,
          content: { subject: 'Welcome, Ada', html: '<p>Secret-ish welcome body</p>', other: {} },
          data: marketing.data,
          history: [{ status: 'sent', provider: 'smtp-1' }],
        },
      ],
    });
    const missing = await app.inject({ method: 'GET', url: '/v1/messages/nope', headers: auth });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({
      code: 'LC_ERR_NOT_FOUND',
      message: expect.stringMatching(/no message with sendId nope/),
    });
  });

  it('resends as one new send per request key, pinned to the logged version, audited without the content', async () => {
    const before = published().length;
    const a = await resend(marketing.sendId, undefined, 'ticket-42');
    expect(a.statusCode).toBe(202);
    const body = a.json();
    expect(body).toMatchObject({
      originalSendId: marketing.sendId,
      channel: 'email',
      templateVersion: 3,
      category: 'marketing',
      // Ada never opted in to marketing email: the chain will refuse it, and the answer says so.
      policy: { allowed: false, reason: 'no_opt_in:marketing:email' },
    });
    expect(body.policy.message).toMatch(/the policy chain will suppress this resend/);
    const [command] = published().slice(before);
    expect(command).toMatchObject({
      sendId: body.sendId,
      userId: 'ada',
      ruleId: 'welcome',
      category: 'marketing',
      template: 'welcome',
      channels: ['email'],
      templateVersion: 3,
      origin: `resend:${marketing.sendId}`,
      data: marketing.data,
      holdout: false,
    });
    expect(bus.messages(T.sends).at(-1)!.key).toBe('ada');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      action: 'message.resend',
      target: `message:${marketing.sendId}`,
      role: 'admin',
      after: { sendId: body.sendId, channel: 'email', idempotencyKey: 'ticket-42' },
    });
    expect(JSON.stringify(audit[0])).not.toMatch(/Secret-ish|Welcome, Ada/);

    // The same key again: the same send (delivery's claim sends it once); another key, another send.
    const again = await resend(marketing.sendId, undefined, 'ticket-42');
    expect(again.json().sendId).toBe(body.sendId);
    const other = await resend(marketing.sendId, undefined, 'ticket-43');
    expect(other.json().sendId).not.toBe(body.sendId);
    // Without a key each request is its own send.
    const r1 = await resend(marketing.sendId);
    const r2 = await resend(marketing.sendId);
    expect(r1.statusCode).toBe(202);
    expect(r1.json().sendId).not.toBe(r2.json().sendId);

    // Once Ada opts in, the answer says consent allows it.
    await stores.preferences.apply(
      'ada',
      {
        records: [
          {
            category: 'marketing',
            channel: 'email',
            record: { granted: true, at: 1, source: 't' },
          },
        ],
      },
      { source: 't', at: 1 },
    );
    expect((await resend(marketing.sendId, undefined, 'ticket-44')).json().policy).toMatchObject({
      allowed: true,
      reason: null,
    });
  });

  it('asks which channel when a message went out on several, and refuses what cannot be resent', async () => {
    const several = await resend(receipt.sendId);
    expect(several.statusCode).toBe(400);
    expect(several.json()).toMatchObject({ code: 'LC_ERR_BAD_REQUEST', field: 'channel' });
    expect(several.json().message).toMatch(/was sent on email, sms: say which to resend/);
    const sms = await resend(receipt.sendId, { channel: 'sms' });
    expect(sms.statusCode).toBe(202);
    expect(sms.json()).toMatchObject({ channel: 'sms', policy: { allowed: true } });

    const before = published().length;
    const refused = await resend(stopped.sendId);
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'LC_ERR_CONFLICT' });
    expect(refused.json().message).toMatch(
      /was not sent on email \(its status: suppressed, no_opt_in:marketing:email\)/,
    );
    expect((await resend('nope')).statusCode).toBe(404);
    expect((await resend(marketing.sendId, { channel: 'fax' })).statusCode).toBe(400);
    expect(published().length).toBe(before);
    expect(audit.filter((r) => r.target === `message:${stopped.sendId}`)).toEqual([]);
  });

  it('documents each operation with its roles: support and marketer read, support resends', async () => {
    const doc = app.swagger() as unknown as {
      paths: Record<
        string,
        Record<string, { 'x-roles'?: string[]; tags?: string[]; description?: string }>
      >;
    };
    expect(doc.paths['/v1/messages']!.get!['x-roles']).toEqual(['admin', 'support', 'marketer']);
    expect(doc.paths['/v1/messages/{sendId}']!.get!['x-roles']).toEqual([
      'admin',
      'support',
      'marketer',
    ]);
    const post = doc.paths['/v1/messages/{sendId}/resend']!.post!;
    expect(post['x-roles']).toEqual(['admin', 'support']);
    expect(post.tags).toEqual(['messages']);
    expect(post.description).toMatch(/unsubscribed since/);
  });
});
