import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBus } from '../../platform/bus.ts';
import { topics } from '../../platform/contracts.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createTrackingLinks } from '../links.ts';
import { createRenderStage } from '../pipeline/render.ts';
import { testContext } from '../../test/support/delivery-context.ts';
import { createTemplateRenderer, SAMPLE_LINKS } from './index.ts';
import { createManagedTemplates } from './managed.ts';
import { createMemoryCoordinator, createTemplateStore, type TemplateStore } from './store.ts';

const T = topics('m');
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'lc-managed-'));
  mkdirSync(join(dir, 'layouts'));
  writeFileSync(join(dir, 'layouts/default.hbs'), '<html>{{{body}}}<a href="{{links.unsubscribe}}">u</a></html>');
  const bus = new InMemoryBus(2);
  const store: TemplateStore = createTemplateStore(
    { topics: T, groupId: 'view-1' },
    { bus, publisher: bus.publisher(), coordinator: createMemoryCoordinator(), logger: silentLogger() },
  );
  await store.start();
  const renderer = createTemplateRenderer({ dir, store }, silentLogger());
  cleanup.push(
    () => store.stop(),
    () => rmSync(dir, { recursive: true, force: true }),
  );
  return { store, renderer };
}

const version = (subject: string, link: string) => ({
  'email.en.hbs': `---\nsubject: ${subject} {{user.firstName}}\n---\n<p><a href="${link}">go</a></p>`,
  'email.de.hbs': `---\nsubject: DE ${subject} {{user.firstName}}\n---\n<p>de</p>`,
  'sample.json': JSON.stringify({ user: { firstName: 'Ada' } }),
});
const data = { user: { firstName: 'Ada' }, links: SAMPLE_LINKS };

describe('a renderer over the templates store', () => {
  it('renders the version published for the channel and locale, or the one a send pins, and says which', async () => {
    const { store, renderer } = await setup();
    await store.save({ name: 'promo', files: version('One', 'https://a.example.com/1'), author: 'k', message: '' });
    expect(() => renderer.renderVersion('promo', 'email', 'en', data)).toThrow(
      /no version published for email .*publish one first/,
    );
    await store.publish({ name: 'promo', version: 1, actor: 'k' });
    await store.save({ name: 'promo', files: version('Two', 'https://a.example.com/2'), author: 'k', message: '' });
    expect(renderer.renderVersion('promo', 'email', 'en', data)).toMatchObject({
      version: 1,
      content: { subject: 'One Ada' },
    });
    // A draft renders only when pinned (a test send, a resend).
    expect(renderer.renderVersion('promo', 'email', 'en', data, 2).content.subject).toBe('Two Ada');
    expect(() => renderer.renderVersion('promo', 'email', 'en', data, 7)).toThrow(/no version 7/);
    await store.publish({ name: 'promo', version: 2, channels: ['email'], locales: ['de'], actor: 'k' });
    expect(renderer.renderVersion('promo', 'email', 'de-AT', data)).toMatchObject({
      version: 2,
      content: { subject: 'DE Two Ada' },
    });
    expect(renderer.versionFor('promo', 'email', 'fr')).toBe(1);
    // The links written in a rendered version are tracked; the layout still comes from the folder.
    expect(renderer.isTemplateLink('https://a.example.com/2')).toBe(true);
    expect(renderer.render('promo', 'email', 'en', data, 1).html).toMatch(/^<html>/);
    expect(renderer.names()).toEqual(['promo']);
    expect(renderer.channels('promo')).toEqual(['email', 'webhook']);
    expect(() => renderer.versionFor('other', 'email', 'en')).toThrow(/not found in the templates store/);
  });

  it('puts the version it rendered on the send for the message log', async () => {
    const { store, renderer } = await setup();
    await store.save({ name: 'promo', files: version('One', 'https://a.example.com/1'), author: 'k', message: '' });
    await store.save({ name: 'promo', files: version('Two', 'https://a.example.com/2'), author: 'k', message: '' });
    await store.publish({ name: 'promo', version: 2, actor: 'k' });
    const stage = createRenderStage({
      renderer,
      links: createTrackingLinks({ publicBaseUrl: 'https://t.example.com', signingSecret: 'a-secret-of-sixteen+' }),
      publicBaseUrl: 'https://t.example.com',
    });
    const ctx = testContext({ send: { template: 'promo' } });
    expect((await stage.run(ctx)).kind).toBe('continue');
    expect(ctx.rendered).toEqual({ templateVersion: 2, locale: 'en' });
    expect(ctx.message!.content.subject).toBe('Two Ada');
    const pinned = testContext({ send: { template: 'promo', templateVersion: 1 } });
    await stage.run(pinned);
    expect(pinned.rendered?.templateVersion).toBe(1);
    const unknown = testContext({ send: { template: 'nope' } });
    expect(await stage.run(unknown)).toMatchObject({ kind: 'failed', dlq: true, reason: expect.stringContaining('"nope" not found') });
  });

  it('checks files as a save would: the validate checks and the variable walk', async () => {
    const { renderer } = await setup();
    expect(renderer.checkFiles('promo', version('One', 'https://a.example.com/1'))).toEqual({ errors: [], warnings: [] });
    const bad = renderer.checkFiles('promo', {
      'email.de.hbs': '---\nsubject: Hi {{user.lastName}}\n---\n<p>{{> nope}}</p>',
      'sample.json': '{"user":{}}',
      'notes.txt': 'x',
    });
    expect(bad.errors.map((e) => `${e.file}: ${e.message}`)).toEqual([
      expect.stringMatching(/^promo\/notes\.txt: unknown file/),
      'promo/email.de.hbs: no email.en.hbs: users whose locale has no file would get nothing',
      'promo/email.de.hbs: unknown partial "nope" (add partials/nope.hbs)',
      'promo/email.de.hbs: body: The partial nope could not be found',
      expect.stringMatching(/^promo\/email\.de\.hbs: subject: "user\.lastName" is not in sample\.json/),
    ]);
  });
});

describe('managed templates at start', () => {
  it('wait for a broker that does not answer yet instead of failing the start, then read and seed', async () => {
    const bus = new InMemoryBus(2);
    let refusals = 3;
    // The real bus behind a connection that is refused a few times first.
    const flaky = {
      consumer: bus.consumer.bind(bus),
      ensureTopics: bus.ensureTopics.bind(bus),
      endOffsets: async (topic: string) => {
        if (refusals-- > 0)
          throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9092'), {
            code: 'ECONNREFUSED',
          });
        return bus.endOffsets(topic);
      },
    };
    const dir = mkdtempSync(join(tmpdir(), 'lc-managed-start-'));
    mkdirSync(join(dir, 'hi'));
    writeFileSync(join(dir, 'hi/sms.en.hbs'), 'Hi {{user.firstName}}');
    writeFileSync(join(dir, 'hi/sample.json'), '{"user":{"firstName":"Ada"}}');
    const templates = createManagedTemplates(
      { dir, defaultTimezone: 'UTC', publishFiles: true, topics: T, startRetry: { initialMs: 10, maxMs: 20 } },
      { bus: flaky, publisher: bus.publisher(), coordinator: createMemoryCoordinator(), logger: silentLogger() },
    );
    cleanup.push(
      () => templates.stop(),
      () => rmSync(dir, { recursive: true, force: true }),
    );
    await templates.start();
    expect(refusals).toBeLessThan(0);
    expect(templates.renderer.renderVersion('hi', 'sms', 'en', data)).toEqual({
      content: { body: 'Hi Ada' },
      version: 1,
    });
  });
});
