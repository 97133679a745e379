import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createMemoryApiKeyStore,
  createMemoryAuditLog,
  generateToken,
  staffCredential,
  type AuditLog,
} from '../../access/index.ts';
import { emptyState, serializeState } from '../../engine/core/state.ts';
import { createUserDirectory, MemoryStores } from '../../engine/index.ts';
import { sendCodec } from '../../platform/avro.ts';
import { InMemoryBus } from '../../platform/bus.ts';
import { topics } from '../../platform/contracts.ts';
import { setupHttpKit } from '../../platform/http.ts';
import { silentLogger } from '../../platform/logger.ts';
import { SAMPLE_LINKS } from './index.ts';
import { createManagedTemplates, type ManagedTemplates } from './managed.ts';
import { templateRoutes } from './routes.ts';
import { createMemoryCoordinator } from './store.ts';

const DIR = join(import.meta.dirname, '../../templates');
const T = topics('rt');

interface Server {
  app: FastifyInstance;
  bus: InMemoryBus;
  audit: AuditLog;
  templates: ManagedTemplates;
  marketer: { authorization: string };
  marketerId: string;
  analyst: { authorization: string };
}

async function server(production = false): Promise<Server> {
  const bus = new InMemoryBus(2);
  const templates = createManagedTemplates(
    { dir: DIR, defaultTimezone: 'UTC', publishFiles: true, topics: T },
    {
      bus,
      publisher: bus.publisher(),
      coordinator: createMemoryCoordinator(),
      logger: silentLogger(),
    },
  );
  await templates.start();
  // A user as the engine keeps them: the preview reads their real traits.
  const engine = new MemoryStores(() => 1_000);
  const epoch = await engine.acquire(0);
  const state = emptyState();
  state.traits = { email: 'bert@example.com', firstName: 'Bert', locale: 'de', plan: 'trial' };
  await engine.write(0, epoch, [
    { userId: 'u-bert', state: serializeState(state), offset: '1', timerIds: [] },
  ]);
  const keys = createMemoryApiKeyStore();
  const audit = createMemoryAuditLog();
  const marketerToken = generateToken();
  const marketer = await keys.put(
    marketerToken,
    { name: 'Mia', role: 'marketer', expiresAt: null, createdBy: 'test' },
    Date.now(),
  );
  const analystToken = generateToken();
  await keys.put(
    analystToken,
    { name: 'Ann', role: 'analyst', expiresAt: null, createdBy: 'test' },
    Date.now(),
  );
  const app = Fastify();
  await setupHttpKit(app, {
    credentials: { staff: staffCredential({ adminToken: 'admin-secret-long-enough-1', keys }) },
    audit,
    openapi: { info: { title: 't', version: '1' } },
  });
  await app.register(templateRoutes, {
    templates,
    users: createUserDirectory(engine),
    sends: { publisher: bus.publisher(), topic: T.sends },
    testSends: { production, domains: ['example.com'] },
  });
  return {
    app,
    bus,
    audit,
    templates,
    marketer: { authorization: `Bearer ${marketerToken}` },
    marketerId: marketer.id,
    analyst: { authorization: `Bearer ${analystToken}` },
  };
}

let s: Server;
beforeAll(async () => {
  s = await server();
});
afterAll(async () => {
  await s.app.close();
  await s.templates.stop();
});

const welcomeEn = (greeting: string) =>
  `---\nsubject: ${greeting}, {{default user.firstName "friend"}}!\npreheader: Three things.\n---\n<p>${greeting} {{user.firstName}}</p>\n`;

describe('template admin routes', () => {
  it('are for marketers and admins: other roles are refused, and the folder is seeded as version 1', async () => {
    const refused = await s.app.inject({ url: '/v1/templates', headers: s.analyst });
    expect(refused.statusCode).toBe(403);
    expect((await s.app.inject({ url: '/v1/templates' })).statusCode).toBe(401);
    const list = await s.app.inject({ url: '/v1/templates', headers: s.marketer });
    expect(list.statusCode).toBe(200);
    const pf = list.json().templates.find((t: { name: string }) => t.name === 'payment_failed');
    expect(pf).toMatchObject({
      channels: ['email', 'inapp', 'push', 'sms', 'webhook'],
      latest: { version: 1, author: 'files:templates/' },
      published: { email: { '*': 1 }, sms: { '*': 1 }, webhook: { '*': 1 } },
    });
    const v = await s.app.inject({ url: '/v1/templates/validate', headers: s.marketer });
    expect(v.json()).toEqual({ errors: [] });
  });

  it('save a version from another with a message, refuse one that does not validate with each problem, and diff two', async () => {
    const saved = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/versions',
      headers: s.marketer,
      payload: { from: 1, message: 'Warmer greeting', files: { 'email.en.hbs': welcomeEn('Hey') } },
    });
    expect(saved.statusCode).toBe(201);
    expect(saved.json()).toMatchObject({
      version: { name: 'welcome', version: 2, author: s.marketerId, message: 'Warmer greeting' },
      warnings: [],
    });
    const v2 = await s.app.inject({ url: '/v1/templates/welcome/versions/2', headers: s.marketer });
    expect(v2.json().files['email.en.hbs']).toBe(welcomeEn('Hey'));
    expect(v2.json().files['email.de.hbs']).toContain('Willkommen');

    const bad = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/versions',
      headers: s.marketer,
      payload: {
        from: 2,
        message: 'typo',
        files: {
          'email.en.hbs': `---\nsubject: Hi {{user.fristName}}\n---\n<p>{{#if user.plan}}{{user.trialEndsAt}}{{/if}}</p>`,
          'sms.en.hbs': '{{#if}}',
        },
      },
    });
    expect(bad.statusCode).toBe(422);
    expect(bad.json().code).toBe('LC_ERR_TEMPLATE_INVALID');
    expect(bad.json().errors).toEqual(
      expect.arrayContaining([
        { file: 'welcome/sms.en.hbs', message: expect.stringContaining('syntax error') },
        {
          file: 'welcome/email.en.hbs',
          message: expect.stringContaining('"user.trialEndsAt" is not in sample.json'),
        },
      ]),
    );
    expect((await s.app.inject({ url: '/v1/templates/welcome', headers: s.marketer })).json())
      .toMatchObject({ versions: [{ version: 1 }, { version: 2 }], published: { email: { '*': 1 } } });

    for (const file of ['__proto__', '../email.en.hbs', '.hidden']) {
      const res = await s.app.inject({
        method: 'POST',
        url: '/v1/templates/welcome/versions',
        headers: { ...s.marketer, 'content-type': 'application/json' },
        payload: `{"from":1,"message":"x","files":{${JSON.stringify(file)}:"x"}}`,
      });
      // The body parser refuses a `__proto__` key itself; the route refuses the other names.
      expect([res.statusCode, res.json().code], file).toEqual([400, 'LC_ERR_BAD_REQUEST']);
    }
    expect(s.templates.store.latest('welcome')?.version).toBe(2);

    const diff = await s.app.inject({
      url: '/v1/templates/welcome/diff?from=1&to=2',
      headers: s.marketer,
    });
    expect(diff.statusCode).toBe(200);
    expect(diff.json().files).toEqual([
      {
        file: 'email.en.hbs',
        change: 'changed',
        patch: expect.stringContaining('+++ welcome@v2/email.en.hbs'),
      },
    ]);
    expect(diff.json().files[0].patch).toContain('+<p>Hey {{user.firstName}}</p>');
    const missing = await s.app.inject({
      url: '/v1/templates/welcome/diff?from=1&to=9',
      headers: s.marketer,
    });
    expect([missing.statusCode, missing.json().message]).toEqual([
      404,
      'template "welcome" has no version 9 (latest: 2)',
    ]);
  });

  it('preview a version for a real user (their traits and locale), for sample data, and say why not', async () => {
    const forBert = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/preview',
      headers: s.marketer,
      payload: { channel: 'email', userId: 'u-bert' },
    });
    expect(forBert.statusCode).toBe(200);
    expect(forBert.json()).toMatchObject({
      version: 1,
      locale: 'de',
      content: { subject: 'Willkommen bei Example, Bert!' },
    });
    const draft = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/preview',
      headers: s.marketer,
      payload: { version: 2, data: { user: { firstName: 'Jo' } } },
    });
    expect(draft.json()).toMatchObject({ version: 2, locale: 'en', content: { subject: 'Hey, Jo!' } });
    expect(draft.json().content.html).toContain(SAMPLE_LINKS.unsubscribe);
    const nobody = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/preview',
      headers: s.marketer,
      payload: { userId: 'u-nobody' },
    });
    expect([nobody.statusCode, nobody.json().message]).toEqual([
      404,
      'no user "u-nobody": the engine has no state for them (never seen, or erased)',
    ]);
    const fails = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/payment_failed/preview',
      headers: s.marketer,
      payload: { channel: 'sms', data: { event: { properties: { amount: 'lots' } } } },
    });
    expect(fails.statusCode).toBe(422);
    expect(fails.json().message).toContain('formatCurrency: "lots" is not a number');
    for (const payload of [{ channel: 'fax' }, { data: [1] }, { userId: 'u-bert', data: {} }])
      expect(
        (
          await s.app.inject({
            method: 'POST',
            url: '/v1/templates/welcome/preview',
            headers: s.marketer,
            payload,
          })
        ).statusCode,
      ).toBe(400);
  });

  it("preview a draft's unsaved files (the editor's live preview): nothing saved, for a user or sample data, and why not", async () => {
    const files = {
      'email.en.hbs': '---\nsubject: Draft for {{user.firstName}}\nlayout: default\n---\n<p>Hi {{user.firstName}}, {{user.plan}} plan</p>',
      'email.de.hbs': '---\nsubject: Entwurf für {{user.firstName}}\nlayout: default\n---\n<p>Hallo {{user.firstName}}</p>',
      'sample.json': JSON.stringify({ user: { firstName: 'Sam', plan: 'pro', email: 's@example.com' } }),
    };
    const preview = (payload: object, name = 'welcome') =>
      s.app.inject({
        method: 'POST',
        url: `/v1/templates/${name}/preview`,
        headers: s.marketer,
        payload,
      });
    const before = (await s.app.inject({ method: 'GET', url: '/v1/templates/welcome', headers: s.marketer })).json();
    const sample = await preview({ files });
    expect(sample.statusCode, sample.body).toBe(200);
    expect(sample.json()).toMatchObject({
      version: null,
      locale: 'en',
      content: { subject: 'Draft for Sam' },
    });
    // In the layout of a saved version: the footer's links are there.
    expect(sample.json().content.html).toContain('Hi Sam, pro plan');
    expect(sample.json().content.html).toContain(SAMPLE_LINKS.unsubscribe);
    // For a real user: their traits and their locale.
    expect((await preview({ files, userId: 'u-bert' })).json()).toMatchObject({
      locale: 'de',
      content: { subject: 'Entwurf für Bert' },
    });
    // A template that does not exist yet can be previewed before its first save.
    expect((await preview({ files }, 'brand_new')).json()).toMatchObject({
      template: 'brand_new',
      content: { subject: 'Draft for Sam' },
    });
    // Nothing was saved.
    const after = (await s.app.inject({ method: 'GET', url: '/v1/templates/welcome', headers: s.marketer })).json();
    expect(after).toEqual(before);
    const broken = await preview({ files: { ...files, 'email.en.hbs': '<p>{{#if user}}unclosed</p>' } });
    expect(broken.statusCode).toBe(422);
    expect(broken.json()).toMatchObject({ code: 'LC_ERR_TEMPLATE' });
    expect(broken.json().message).toContain('email.en.hbs');
    for (const payload of [
      { files: { '../../etc/passwd': 'x' } },
      { files, version: 1 },
      { files, userId: 'u-bert', data: {} },
    ])
      expect((await preview(payload)).statusCode, JSON.stringify(payload)).toBe(400);
  });

  it('publish a version, roll back to the one before, and record every change with versions and hashes', async () => {
    const pub = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/publish',
      headers: s.marketer,
      payload: { version: 2, channels: ['email'] },
    });
    expect(pub.statusCode).toBe(200);
    expect(pub.json()).toMatchObject({
      changes: [{ channel: 'email', locale: '*', from: 1, to: 2 }],
      published: { email: { '*': 2 }, inapp: { '*': 1 } },
    });
    const preview = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/preview',
      headers: s.marketer,
      payload: {},
    });
    expect(preview.json()).toMatchObject({ version: 2, content: { subject: 'Hey, Ada!' } });
    const back = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/rollback',
      headers: s.marketer,
      payload: { channels: ['email'] },
    });
    expect(back.json()).toMatchObject({ changes: [{ channel: 'email', from: 2, to: 1 }] });
    const again = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/rollback',
      headers: s.marketer,
      payload: { channels: ['email'] },
    });
    expect(again.statusCode).toBe(409);
    expect(again.json().message).toContain('email/* has no earlier published version');

    const { entries } = await s.audit.query({ target: 'template:welcome', limit: 50 });
    const mine = entries.reverse().map((e) => [e.action, e.actor, e.role]);
    expect(mine).toEqual([
      ['template.save', s.marketerId, 'marketer'],
      ['template.publish', s.marketerId, 'marketer'],
      ['template.rollback', s.marketerId, 'marketer'],
    ]);
    const save = entries.find((e) => e.action === 'template.save')!;
    const v2 = s.templates.store.version('welcome', 2)!;
    expect(save.before).toEqual({ version: 1, hash: s.templates.store.version('welcome', 1)!.hash });
    expect(save.after).toEqual({ version: 2, hash: v2.hash, message: 'Warmer greeting' });
    expect(JSON.stringify(entries)).not.toContain('<p>');
    const publish = entries.find((e) => e.action === 'template.publish')!;
    expect(publish.after).toMatchObject({ version: 2, hash: v2.hash, published: { email: { '*': 2 } } });
  });

  it('test-send a pinned version as a transactional email to the named address, marked with who asked', async () => {
    const res = await s.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/test-send',
      headers: s.marketer,
      payload: { to: 'mia@agency.test', version: 2, userId: 'u-bert' },
    });
    expect(res.statusCode).toBe(202);
    const sent = s.bus.messages(T.sends).map((m) => sendCodec.decode(m.value!));
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      sendId: res.json().sendId,
      template: 'welcome',
      templateVersion: 2,
      category: 'transactional',
      channels: ['email'],
      origin: `test:${s.marketerId}`,
      data: { user: { email: 'mia@agency.test', firstName: 'Bert', locale: 'de' } },
    });
    const { entries } = await s.audit.query({ action: 'template.test_send', limit: 5 });
    expect(entries[0]).toMatchObject({
      actor: s.marketerId,
      after: { sendId: res.json().sendId, version: 2, to: 'mia@agency.test' },
    });
  });

  it('in production, test-send only to the domains of LC_TEST_SEND_DOMAINS', async () => {
    const prod = await server(true);
    try {
      const send = (to: string) =>
        prod.app.inject({
          method: 'POST',
          url: '/v1/templates/welcome/test-send',
          headers: prod.marketer,
          payload: { to },
        });
      const refused = await send('someone@gmail.com');
      expect(refused.statusCode).toBe(403);
      expect(refused.json()).toMatchObject({
        code: 'LC_ERR_RECIPIENT_NOT_ALLOWED',
        message: expect.stringContaining('LC_TEST_SEND_DOMAINS'),
      });
      expect((await send('qa@staff.example.com')).statusCode).toBe(202);
      expect((await send('not-an-address')).statusCode).toBe(400);
      expect(prod.bus.messages(T.sends)).toHaveLength(1);
    } finally {
      await prod.app.close();
      await prod.templates.stop();
    }
  });

  it('document every route in OpenAPI with its roles', async () => {
    const doc = s.app.swagger() as unknown as {
      paths: Record<string, Record<string, { 'x-roles'?: string[]; tags?: string[] }>>;
    };
    const ops = Object.entries(doc.paths).flatMap(([p, m]) =>
      Object.entries(m).map(([method, op]) => [`${method.toUpperCase()} ${p}`, op] as const),
    );
    expect(ops.map(([k]) => k).sort()).toEqual([
      'GET /v1/templates',
      'GET /v1/templates/validate',
      'GET /v1/templates/{name}',
      'GET /v1/templates/{name}/diff',
      'GET /v1/templates/{name}/versions/{version}',
      'POST /v1/templates/{name}/preview',
      'POST /v1/templates/{name}/publish',
      'POST /v1/templates/{name}/rollback',
      'POST /v1/templates/{name}/test-send',
      'POST /v1/templates/{name}/versions',
    ]);
    for (const [, op] of ops) {
      expect(op['x-roles']).toEqual(['admin', 'marketer']);
      expect(op.tags).toEqual(['templates']);
    }
  });
});
