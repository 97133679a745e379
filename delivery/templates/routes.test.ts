import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCredential, setupHttpKit } from '../../platform/http.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createTemplateRenderer, SAMPLE_LINKS } from './index.ts';
import { templateRoutes } from './routes.ts';

const DIR = join(import.meta.dirname, '../../templates');
const auth = { authorization: 'Bearer admin-secret' };
let app: FastifyInstance;

beforeAll(async () => {
  app = Fastify();
  await setupHttpKit(app, { credentials: { staff: adminCredential('admin-secret') } });
  await app.register(templateRoutes, {
    renderer: createTemplateRenderer({ dir: DIR }, silentLogger()),
    dir: DIR,
  });
});
afterAll(() => app.close());

describe('template admin routes', () => {
  it('require the admin token', async () => {
    for (const headers of [
      {},
      { authorization: 'Bearer wrong' },
      { authorization: 'admin-secret' },
    ]) {
      const res = await app.inject({ method: 'GET', url: '/v1/templates', headers });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
    }
  });

  it('list templates with their channels and report validation', async () => {
    const list = await app.inject({ method: 'GET', url: '/v1/templates', headers: auth });
    expect(list.json().templates).toContainEqual({
      name: 'payment_failed',
      channels: ['email', 'inapp', 'push', 'sms', 'webhook'],
    });
    const v = await app.inject({ method: 'GET', url: '/v1/templates/validate', headers: auth });
    expect(v.json()).toEqual({ errors: [] });
  });

  it('preview a template for given data over its sample', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/preview',
      headers: auth,
      payload: { channel: 'email', locale: 'de', data: { user: { firstName: 'Jörg' } } },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.content.subject).toBe('Willkommen bei Example, Jörg!');
    expect(body.content.html).toContain(SAMPLE_LINKS.unsubscribe);
    expect(body.content.text).toContain('Hallo Jörg,');
  });

  it('explain why a preview does not render, and refuse bad requests', async () => {
    const missing = await app.inject({
      method: 'POST',
      url: '/v1/templates/payment_failed/preview',
      headers: auth,
      payload: { channel: 'sms', data: { event: { properties: { amount: 'lots' } } } },
    });
    expect(missing.statusCode).toBe(422);
    expect(missing.json()).toMatchObject({
      code: 'LC_ERR_TEMPLATE',
      details: { template: 'payment_failed', channel: 'sms' },
    });
    expect(missing.json().message).toContain('formatCurrency: "lots" is not a number');
    expect(
      (
        await app.inject({
          method: 'POST',
          url: '/v1/templates/nope/preview',
          headers: auth,
          payload: {},
        })
      ).statusCode,
    ).toBe(404);
    expect(
      (
        await app.inject({
          method: 'POST',
          url: '/v1/templates/welcome/preview',
          headers: auth,
          payload: { channel: 'fax' },
        })
      ).statusCode,
    ).toBe(400);
    expect(
      (
        await app.inject({
          method: 'POST',
          url: '/v1/templates/welcome/preview',
          headers: auth,
          payload: { data: [1] },
        })
      ).statusCode,
    ).toBe(400);
  });
});
