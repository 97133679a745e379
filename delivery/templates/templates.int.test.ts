// Managed templates on the real stack: two API instances and a delivery worker, each reading
// the templates topic of this test from Kafka, numbering versions through Redis. A marketer
// saves version 2 of `welcome` on instance A, previews it for a real user, publishes it; the
// next send delivery renders is version 2 and instance B sees it; a rollback on B brings the
// next send back to version 1; the audit log has every change with who made it and their role;
// saves racing on both instances never share a version number.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisApiKeyStore, generateToken } from '../../access/index.ts';
import { createApiServer } from '../../bin/api.ts';
import { emptyState, serializeState } from '../../engine/core/state.ts';
import { createRedisStateStore } from '../../engine/index.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import {
  createHarness,
  logger,
  startSink,
  stopSink,
  waitFor,
  welcomeSend,
  type Harness,
} from '../../test/support/delivery-harness.ts';
import type { SmtpSink } from '../../devtools/smtp-sink.ts';
import { runDelivery, type DeliveryHandle } from '../pipeline/run.ts';
import { createManagedTemplates, type ManagedTemplates } from './managed.ts';
import { createRedisCoordinator } from './store.ts';

interface Instance {
  app: FastifyInstance;
  bus: KafkaBus;
  templates: ManagedTemplates;
}

let h: Harness;
let sink: SmtpSink & { dir: string };
let delivery: DeliveryHandle;
let a: Instance;
let b: Instance;
let marketer: { authorization: string };
let marketerId: string;

async function apiInstance(): Promise<Instance> {
  const bus = KafkaBus.fromConfig(h.config, logger);
  const templates = createManagedTemplates(
    {
      dir: h.config.delivery.templatesDir,
      defaultTimezone: 'UTC',
      publishFiles: true,
      topics: h.topics,
    },
    {
      bus,
      publisher: bus.publisher(),
      coordinator: createRedisCoordinator(h.redis),
      logger,
    },
  );
  await templates.start();
  const app = await createApiServer(h.config, {
    redis: h.redis,
    publisher: bus.publisher(),
    logger,
    metrics: createMetricsRegistry({ defaults: false }),
    templates,
  });
  return { app, bus, templates };
}

beforeAll(async () => {
  sink = await startSink();
  h = await createHarness('tpl-managed', {
    'delivery.smtpUrls': [`smtp://127.0.0.1:${sink.port}`],
  });
  // The delivery worker reads the topic first and seeds it from the templates folder.
  delivery = await runDelivery(h.config, logger, { redis: h.redis, bus: h.bus });
  [a, b] = await Promise.all([apiInstance(), apiInstance()]);
  const token = generateToken();
  marketerId = (
    await createRedisApiKeyStore(h.redis).put(
      token,
      { name: 'Mia', role: 'marketer', expiresAt: null, createdBy: 'test' },
      Date.now(),
    )
  ).id;
  marketer = { authorization: `Bearer ${token}` };
  // A user as the engine keeps them, for the preview.
  const state = createRedisStateStore(h.redis, { eventsTopic: h.topics.events });
  const epoch = await state.acquire(0);
  const user = emptyState();
  user.traits = { email: 'bert@example.com', firstName: 'Bert', locale: 'de', plan: 'trial' };
  await state.write(0, epoch, [
    { userId: `bert-${h.id}`, state: serializeState(user), offset: '1', timerIds: [] },
  ]);
});

afterAll(async () => {
  for (const i of [a, b]) {
    await i?.app.close();
    await i?.templates.stop();
    await i?.bus.close();
  }
  await delivery?.stop();
  await h?.close();
  if (sink) await stopSink(sink);
});

const NEW_EN = `---
subject: Version two says hello, {{default user.firstName "friend"}}
preheader: Managed through the API.
---
<p>Hello {{user.firstName}}, this is version two.</p>
`;
const NEW_DE = `---
subject: Version zwei grüßt, {{default user.firstName "Freund"}}
---
<p>Hallo {{user.firstName}}, das ist Version zwei.</p>
`;

async function send(userId: string): Promise<{ subject: string }> {
  const command = welcomeSend(userId, { category: 'transactional' });
  await h.publishSend(command);
  const to = `${userId}@example.com`;
  return waitFor(`the email of ${command.sendId}`, () => sink.list({ to })[0]);
}

describe('managed templates across instances', () => {
  it('a version saved and published on one instance is what delivery sends next and what the other sees; a rollback on the other brings back the first', async () => {
    // Seeded from the folder: version 1, published.
    expect((await send(`u1-${h.id}`)).subject).toBe(`Welcome to Example, Ada-u1-${h.id}!`);

    const saved = await a.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/versions',
      headers: marketer,
      payload: {
        from: 1,
        message: 'Friendlier welcome',
        files: { 'email.en.hbs': NEW_EN, 'email.de.hbs': NEW_DE },
      },
    });
    expect(saved.statusCode, saved.body).toBe(201);
    expect(saved.json().version).toMatchObject({ version: 2, author: marketerId });
    // Read your writes: instance A answers with version 2 in its own view at once.
    const onA = await a.app.inject({ url: '/v1/templates/welcome', headers: marketer });
    expect(onA.json().versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);

    // A preview of the draft for a real user: their traits and their locale.
    const preview = await a.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/preview',
      headers: marketer,
      payload: { version: 2, userId: `bert-${h.id}` },
    });
    expect(preview.statusCode, preview.body).toBe(200);
    expect(preview.json()).toMatchObject({
      version: 2,
      locale: 'de',
      content: { subject: 'Version zwei grüßt, Bert' },
    });
    // A draft is not sent.
    expect((await send(`u2-${h.id}`)).subject).toBe(`Welcome to Example, Ada-u2-${h.id}!`);

    const published = await a.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/publish',
      headers: marketer,
      payload: { version: 2, channels: ['email'] },
    });
    expect(published.statusCode, published.body).toBe(200);
    const publishedAt = Date.now();
    // Instance B follows the topic: it sees version 2 published.
    await waitFor('instance B to see the publication', async () => {
      const res = await b.app.inject({ url: '/v1/templates/welcome', headers: marketer });
      const body = res.json() as { versions: unknown[]; published: { email?: { '*'?: number } } };
      return body.versions.length === 2 && body.published.email?.['*'] === 2;
    });
    // Every worker follows within about a second.
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - publishedAt))));
    expect((await send(`u3-${h.id}`)).subject).toBe(`Version two says hello, Ada-u3-${h.id}`);

    const rolledBack = await b.app.inject({
      method: 'POST',
      url: '/v1/templates/welcome/rollback',
      headers: marketer,
      payload: { channels: ['email'] },
    });
    expect(rolledBack.statusCode, rolledBack.body).toBe(200);
    expect(rolledBack.json().changes).toEqual([
      { channel: 'email', locale: '*', from: 2, to: 1 },
    ]);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await send(`u4-${h.id}`)).subject).toBe(`Welcome to Example, Ada-u4-${h.id}!`);

    // The audit log (shared by the instances) has each change, who made it and their role.
    const audit = await b.app.inject({
      url: '/v1/audit?target=template:welcome',
      headers: { authorization: `Bearer ${h.config.auth.adminToken}` },
    });
    const entries = (
      audit.json() as {
        entries: { action: string; actor: string; role: string; after: unknown }[];
      }
    ).entries.reverse();
    expect(entries.map((e) => [e.action, e.actor, e.role])).toEqual([
      ['template.save', marketerId, 'marketer'],
      ['template.publish', marketerId, 'marketer'],
      ['template.rollback', marketerId, 'marketer'],
    ]);
    expect(entries[0]!.after).toMatchObject({ version: 2, message: 'Friendlier welcome' });
  });

  it('gives two instances saving at once distinct version numbers, and both see every version', async () => {
    const save = (i: Instance, n: number) =>
      i.app.inject({
        method: 'POST',
        url: '/v1/templates/welcome/versions',
        headers: marketer,
        payload: {
          from: 1,
          message: `race ${n}`,
          files: { 'email.en.hbs': NEW_EN.replace('two', `race ${n}`) },
        },
      });
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, n) => save(n % 2 ? a : b, n)),
    );
    const numbers = answers.map((r) => (r.json() as { version: { version: number } }).version.version);
    expect(new Set(numbers).size).toBe(8);
    for (const i of [a, b])
      await waitFor('every raced version in each view', () =>
        numbers.every((n) => i.templates.store.version('welcome', n) !== undefined),
      );
    expect(a.templates.store.versions('welcome')).toEqual(b.templates.store.versions('welcome'));
  });
});
