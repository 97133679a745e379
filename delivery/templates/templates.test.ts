import {
  mkdtempSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { LifecycleError } from '../../platform/errors.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createTemplateRenderer, localeChain, SAMPLE_LINKS } from './index.ts';
import { htmlToText } from './html-to-text.ts';
import { splitFrontMatter } from './loader.ts';

const REPO_TEMPLATES = join(dirname(fileURLToPath(import.meta.url)), '../../templates');
const dirs: string[] = [];

function fixture(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'lc-templates-'));
  dirs.push(dir);
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), content);
  }
  return dir;
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const user = {
  email: 'ada@example.com',
  firstName: 'Ada',
  plan: 'trial',
  locale: 'en',
  timezone: 'Europe/Berlin',
};
const data = {
  user,
  event: { type: 'signup', properties: {} },
  rule: { id: 'r1' },
  links: SAMPLE_LINKS,
};

function catchError(fn: () => unknown): LifecycleError {
  try {
    fn();
  } catch (err) {
    if (err instanceof LifecycleError) return err;
    throw err;
  }
  throw new Error('expected a LifecycleError');
}

describe('the shipped templates', () => {
  it('validate cleanly and render every example template for en and de', () => {
    const r = createTemplateRenderer({ dir: REPO_TEMPLATES }, silentLogger());
    expect(r.validate()).toEqual([]);
    expect(r.names()).toEqual(
      expect.arrayContaining([
        'welcome',
        'activation_tip',
        'activation_tip_b',
        'trial_ending',
        'payment_failed',
        'winback',
        'weekly_digest',
        'confirm_subscription',
      ]),
    );
    // The confirmation email of double opt-in reads its link from `optIn` (delivery/optin/).
    const optIn = {
      confirmUrl: 'https://t.example.com/c?t=sample',
      reminder: true,
      expiresAt: Date.UTC(2026, 2, 17),
    };
    for (const name of r.names()) {
      for (const locale of ['en', 'de']) {
        const out = r.render(name, 'email', locale, {
          ...data,
          event: { type: 'x', properties: { amount: 10, currency: 'EUR' } },
          ...(name === 'confirm_subscription' ? { optIn } : {}),
        });
        expect(out.subject).toBeTruthy();
        expect(out.html).toContain('<html');
        expect(out.text).not.toMatch(/<[a-z]/i);
        expect(out.html).toContain(SAMPLE_LINKS.preferences);
      }
    }
  });

  it('marketing layouts carry the unsubscribe link, the transactional one does not', () => {
    const r = createTemplateRenderer({ dir: REPO_TEMPLATES }, silentLogger());
    expect(r.render('winback', 'email', 'de', data).html).toContain(SAMPLE_LINKS.unsubscribe);
    const tx = r.render('payment_failed', 'email', 'en', {
      ...data,
      event: { type: 'payment_failed', properties: { amount: 49, currency: 'EUR' } },
    });
    expect(tx.html).not.toContain(SAMPLE_LINKS.unsubscribe);
    expect(tx.subject).toBe('Action needed: your payment of €49.00 did not go through');
  });
});

describe('the weekly digest template', () => {
  const r = () => createTemplateRenderer({ dir: REPO_TEMPLATES }, silentLogger());
  const item = (type: string, ts: string, properties: Record<string, unknown>) => ({
    type,
    ts: Date.parse(ts),
    properties,
  });
  const used = item('Feature Used', '2026-11-20T08:30:00Z', { feature: '<img src=x onerror=alert(1)>' });
  const exported = item('export_done', '2026-11-21T17:00:00Z', { format: 'pdf' });
  const digest = {
    window: '7d',
    from: Date.parse('2026-11-16T08:00:00Z'),
    to: Date.parse('2026-11-23T08:00:00Z'),
    total: 61,
    more: true,
    items: [exported, used],
    types: [
      { type: 'Feature Used', count: 50, atLeast: true, items: [used] },
      { type: 'export_done', count: 11, atLeast: false, items: [exported] },
    ],
  };

  it('lists the items per type with counts, dates in the recipient zone and escaped properties', () => {
    const en = r().render('weekly_digest', 'email', 'en', { ...data, digest });
    expect(en.subject).toBe('Your week at Example: 61 updates');
    expect(en.html).toContain('<h3>Features used: 50+</h3>');
    expect(en.html).toContain('<h3>Exports: 11</h3>');
    // Berlin (the user's zone) is an hour ahead of UTC in November.
    expect(en.html).toContain('Nov 21, 2026, 6:00 PM · pdf');
    expect(en.html).toContain('&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt;');
    expect(en.html).not.toContain('<img');
    expect(en.html).toContain('Only the latest 2 are listed here');
    expect(en.text).toContain('Exports: 11');
    const de = r().render('weekly_digest', 'email', 'de', { ...data, digest });
    expect(de.subject).toBe('Ihre Woche bei Example: 61 Aktivitäten');
    expect(de.html).toContain('21.11.2026, 18:00 · pdf');
    expect(r().render('weekly_digest', 'inapp', 'en', { ...data, digest }).body).toBe(
      'This week: Features used 50+, Exports 11.',
    );
    expect(r().render('weekly_digest', 'inapp', 'de', { ...data, digest }).body).toBe(
      'Diese Woche: Genutzte Funktionen 50+, Exporte 11.',
    );
  });

  it('passes the checks of a save through the API (every variable provided or guarded)', () => {
    const files = Object.fromEntries(
      readdirSync(join(REPO_TEMPLATES, 'weekly_digest')).map((f) => [
        f,
        readFileSync(join(REPO_TEMPLATES, 'weekly_digest', f), 'utf8'),
      ]),
    );
    expect(r().checkFiles('weekly_digest', files)).toEqual({ errors: [], warnings: [] });
  });

  it('renders without digest data (an older engine, a campaign, a test send, a rule without digest), never "0 ... updated"', () => {
    // As the fault suites' third-feature-use rule sends it: the trigger event, no digest.
    const plain = {
      ...data,
      event: { type: 'Feature Used', properties: { feature: 'export' } },
    };
    for (const locale of ['en', 'de']) {
      const email = r().render('weekly_digest', 'email', locale, plain);
      expect(email.subject).toBe(locale === 'en' ? 'Your week at Example' : 'Ihre Woche bei Example');
      expect(email.text).not.toMatch(/\b0\b/);
      const inapp = r().render('weekly_digest', 'inapp', locale, plain);
      expect(inapp.body).toMatch(/\S/);
    }
    expect(r().render('weekly_digest', 'email', 'en', plain).html).toContain(
      'open Example to catch up',
    );
  });
});

describe('locale fallback', () => {
  it('goes user locale -> language -> default', () => {
    expect(localeChain('de-AT', 'en')).toEqual(['de-at', 'de', 'en']);
    expect(localeChain('pt_BR', 'en')).toEqual(['pt-br', 'pt', 'en']);
    expect(localeChain('', 'en')).toEqual(['en']);
  });

  it('picks the most specific file that exists', () => {
    const dir = fixture({
      'hi/sms.en.hbs': 'hello',
      'hi/sms.de.hbs': 'hallo',
      'hi/sms.pt-BR.hbs': 'olá',
    });
    const r = createTemplateRenderer({ dir }, silentLogger());
    expect(r.render('hi', 'sms', 'de-AT', data).body).toBe('hallo');
    expect(r.render('hi', 'sms', 'pt-BR', data).body).toBe('olá');
    expect(r.render('hi', 'sms', 'pt-PT', data).body).toBe('hello');
    expect(r.render('hi', 'sms', 'fr', data).body).toBe('hello');
  });

  it('uses a per-locale layout when there is one', () => {
    const dir = fixture({
      'layouts/default.hbs':
        '<html>EN {{{body}}} <a href="{{links.unsubscribe}}">Unsubscribe</a></html>',
      'layouts/default.de.hbs':
        '<html>DE {{{body}}} <a href="{{links.unsubscribe}}">Abmelden</a></html>',
      'hi/email.en.hbs': '---\nsubject: Hi\n---\n<p>Hi</p>',
      'hi/email.de.hbs': '---\nsubject: Hallo\n---\n<p>Hallo</p>',
    });
    const r = createTemplateRenderer({ dir }, silentLogger());
    expect(r.render('hi', 'email', 'de-CH', data).html).toBe(
      `<html>DE <p>Hallo</p> <a href="${SAMPLE_LINKS.unsubscribe}">Abmelden</a></html>`,
    );
    expect(r.render('hi', 'email', 'fr', data).html).toContain('EN <p>Hi</p>');
  });
});

describe('rendering', () => {
  const dir = () =>
    fixture({
      'layouts/default.hbs':
        '<html><title>{{subject}}</title><body>{{{body}}}<a href="{{links.unsubscribe}}">Unsubscribe</a></body></html>',
      'partials/button.hbs': '<a class="button" href="{{url}}">{{label}}</a>',
      'news/email.en.hbs':
        '---\nsubject: News for {{user.firstName}} & friends\npreheader: Read me\n---\n<p>Hello {{user.firstName}}</p>\n{{> button url="https://x.test/a?b=1&c=2" label="Go"}}',
      'news/inapp.en.hbs':
        '---\ntitle: Hi {{user.firstName}}\nurl: https://x.test/{{rule.id}}\n---\n  Body for {{user.firstName}} & co  ',
      'plain/email.en.hbs': '---\nsubject: Plain\nlayout: none\n---\n<p>HTML only</p>',
      'plain/email.en.txt.hbs': 'Text for {{user.firstName}} & co',
    });

  it('escapes HTML in the HTML part but not in the subject, text and in-app parts', () => {
    const r = createTemplateRenderer({ dir: dir() }, silentLogger());
    const evil = { ...data, user: { ...user, firstName: '<script>alert(1)</script>' } };
    const email = r.render('news', 'email', 'en', evil);
    expect(email.html).toContain('Hello &lt;script&gt;alert(1)&lt;/script&gt;');
    expect(email.html).not.toContain('<script>');
    expect(email.subject).toBe('News for <script>alert(1)</script> & friends');
    expect(email.html).toContain('<title>News for &lt;script&gt;');
    const inapp = r.render('news', 'inapp', 'en', {
      ...data,
      user: { ...user, firstName: 'Tom & Jerry' },
    });
    expect(inapp).toEqual({
      title: 'Hi Tom & Jerry',
      body: 'Body for Tom & Jerry & co',
      url: 'https://x.test/r1',
    });
  });

  it('generates the text part from the HTML, keeping links', () => {
    const r = createTemplateRenderer({ dir: dir() }, silentLogger());
    const email = r.render('news', 'email', 'en', data);
    expect(email.text).toBe(
      `Hello Ada\n\nGo (https://x.test/a?b=1&c=2)Unsubscribe (${SAMPLE_LINKS.unsubscribe})\n`,
    );
  });

  it('uses the explicit text part and `layout: none`', () => {
    const r = createTemplateRenderer({ dir: dir() }, silentLogger());
    expect(r.render('plain', 'email', 'en', data)).toEqual({
      subject: 'Plain',
      html: '<p>HTML only</p>',
      text: 'Text for Ada & co',
    });
  });

  it('gives webhooks the data and the in-app text', () => {
    const r = createTemplateRenderer({ dir: dir() }, silentLogger());
    const out = r.render('news', 'webhook', 'en', data);
    expect(out.title).toBe('Hi Ada');
    expect(out.data).toMatchObject({
      template: 'news',
      locale: 'en',
      user: { firstName: 'Ada' },
      rule: { id: 'r1' },
    });
    expect(r.channels('news')).toEqual(['email', 'inapp', 'webhook']);
  });

  it('throws LC_ERR_TEMPLATE on a missing variable instead of rendering a blank', () => {
    const r = createTemplateRenderer({ dir: dir() }, silentLogger());
    const err = catchError(() =>
      r.render('news', 'email', 'en', { ...data, user: { email: 'x@example.com' } }),
    );
    expect(err.code).toBe('LC_ERR_TEMPLATE');
    expect(err.retriable).toBe(false);
    expect(err.message).toContain('missing variable "firstName"');
    expect(err.details).toMatchObject({ template: 'news', channel: 'email', reason: 'render' });
  });

  it('throws LC_ERR_TEMPLATE for an unknown template and for a channel the template lacks', () => {
    const r = createTemplateRenderer({ dir: dir() }, silentLogger());
    expect(catchError(() => r.render('nope', 'email', 'en', data)).details).toMatchObject({
      reason: 'not_found',
    });
    expect(catchError(() => r.render('news', 'sms', 'en', data)).details).toMatchObject({
      reason: 'no_channel',
    });
    expect(r.has('news')).toBe(true);
    expect(r.has('nope')).toBe(false);
  });

  it('renders blanks for missing variables only when strict mode is off', () => {
    const r = createTemplateRenderer({ dir: dir(), strict: false }, silentLogger());
    expect(r.render('news', 'inapp', 'en', { rule: { id: 'r' } }).title).toBe('Hi');
  });
});

describe('no prototype access', () => {
  const payloads = {
    lookup:
      '{{#with (lookup this "constructor")}}{{#with (lookup this "constructor")}}{{this}}{{/with}}{{/with}}',
    path: 'a{{constructor.name}}b{{user.constructor.name}}',
    proto: '{{__proto__}}{{user.__proto__.toString}}',
    // The published handlebars RCE chain (CVE-2019-19919 family).
    rce: [
      '{{#with "s" as |string|}}{{#with "e"}}{{#with split as |conslist|}}{{this.pop}}',
      '{{this.push (lookup string.sub "constructor")}}{{this.pop}}{{#with string.split as |codelist|}}',
      '{{this.pop}}{{this.push "globalThis.__lcPwned = true;"}}{{this.pop}}{{#each conslist}}',
      '{{#with (string.sub.apply 0 codelist)}}{{this}}{{/with}}{{/each}}{{/with}}{{/with}}{{/with}}{{/with}}',
    ].join(''),
  };

  for (const strict of [true, false]) {
    it(`constructor/prototype payloads do nothing (strict: ${strict})`, () => {
      const files: Record<string, string> = {};
      for (const [name, body] of Object.entries(payloads)) files[`${name}/sms.en.hbs`] = body;
      const r = createTemplateRenderer({ dir: fixture(files), strict }, silentLogger());
      for (const name of Object.keys(payloads)) {
        let out = '';
        try {
          out = r.render(name, 'sms', 'en', data).body ?? '';
        } catch (err) {
          // Refusing the payload outright is fine too, as long as it is our typed error.
          expect(err).toBeInstanceOf(LifecycleError);
        }
        expect(out).not.toMatch(/function|native code|Object|\[object/);
      }
      expect((globalThis as Record<string, unknown>).__lcPwned).toBeUndefined();
    });
  }
});

describe('validate', () => {
  it('reports each problem as file: message', () => {
    const dir = fixture({
      'layouts/default.hbs': '<html>{{{body}}}</html>',
      'ok/email.en.hbs': '---\nsubject: Fine\n---\n<p>{{user.firstName}}</p>',
      'ok/sample.json': JSON.stringify({ user }),
      'syntax/email.en.hbs':
        '---\nsubject: Broken\n---\n<p>line one</p>\n<p>{{#if user.plan}}unclosed</p>',
      'syntax/sample.json': JSON.stringify({ user }),
      'missingvar/email.en.hbs': '---\nsubject: Hi\n---\n<p>{{user.lastName}}</p>',
      'missingvar/sample.json': JSON.stringify({ user }),
      'nopartial/sms.en.hbs': '{{> footer}}',
      'nopartial/sample.json': '{}',
      'nolayout/email.en.hbs': '---\nsubject: Hi\nlayout: fancy\n---\nx',
      'nolayout/sample.json': '{}',
      'frontmatter/email.en.hbs': '---\nsubjet: typo\n---\nx',
      'frontmatter/sample.json': '{}',
      'nodefault/email.de.hbs': '---\nsubject: Nur Deutsch\n---\nx',
      'nodefault/sample.json': '{}',
      'nosample/sms.en.hbs': 'hi',
      'badsample/sms.en.hbs': 'hi',
      'badsample/sample.json': '{ not json',
      'helper/sms.en.hbs': '{{shout user.firstName}}',
      'helper/sample.json': JSON.stringify({ user }),
      'stray/notes.txt': 'what is this',
    });
    const r = createTemplateRenderer({ dir }, silentLogger());
    const lines = r.validate().map((e) => `${e.file.slice(dir.length + 1)}: ${e.message}`);
    const expectLine = (re: RegExp) =>
      expect(
        lines.some((l) => re.test(l)),
        `${re} in\n${lines.join('\n')}`,
      ).toBe(true);
    expectLine(/^syntax\/email\.en\.hbs: syntax error on line 5/);
    expectLine(
      /^missingvar\/email\.en\.hbs: body: line 4: missing variable "lastName" in \{\{user\.lastName\}\}/,
    );
    expectLine(/^nopartial\/sms\.en\.hbs: unknown partial "footer"/);
    expectLine(/^nolayout\/email\.en\.hbs: unknown layout "fancy"/);
    expectLine(/^frontmatter\/email\.en\.hbs: unknown front matter field "subjet"/);
    expectLine(/^frontmatter\/email\.en\.hbs: missing front matter field "subject"/);
    expectLine(/^nodefault\/email\.de\.hbs: no email\.en\.hbs/);
    expectLine(/^nosample\/sample\.json: missing sample data/);
    expectLine(/^badsample\/sample\.json: invalid sample data/);
    expectLine(/^helper\/sms\.en\.hbs: .*unknown helper shout/);
    expectLine(/^stray\/notes\.txt: unknown file/);
    expect(lines.some((l) => l.startsWith('ok/'))).toBe(false);
  });

  it('reload picks up edits and keeps the last good version of a file that broke', () => {
    const dir = fixture({
      'hi/sms.en.hbs': 'v1 {{user.firstName}}',
      'hi/sample.json': JSON.stringify({ user }),
    });
    const r = createTemplateRenderer({ dir }, silentLogger());
    expect(r.render('hi', 'sms', 'en', data).body).toBe('v1 Ada');
    writeFileSync(join(dir, 'hi/sms.en.hbs'), 'v2 {{user.firstName}}');
    r.reload();
    expect(r.render('hi', 'sms', 'en', data).body).toBe('v2 Ada');
    writeFileSync(join(dir, 'hi/sms.en.hbs'), 'v3 {{#if}}');
    r.reload();
    expect(r.render('hi', 'sms', 'en', data).body).toBe('v2 Ada');
    expect(r.validate()[0]?.message).toMatch(/syntax error/);
  });
});

describe('links written in the templates', () => {
  const files = {
    'partials/button.hbs': '<a class="button" href="{{url}}">{{label}}</a>',
    'layouts/default.hbs': '<html><body>{{{body}}}<a href="https://example.com/help?from=footer&amp;x=1">Help</a></body></html>',
    'promo/email.en.hbs': [
      '---',
      'subject: Hi',
      '---',
      '<a href="https://shop.example.com/sale">Sale</a>',
      '<a href="{{user.website}}">Your site</a>',
      '{{> button url="https://shop.example.com/cart" label="Cart"}}',
      '<a href="https://shop.example.com/orders/{{event.properties.orderId}}">Order</a>',
      '<a href="https://{{user.subdomain}}.example.com/">Yours</a>',
      '<a href="https://shop.example.com{{user.path}}">Path</a>',
      '<a href="{{default user.referrer "https://shop.example.com/welcome"}}">Welcome</a>',
    ].join('\n'),
    'promo/email.en.txt.hbs': 'Sale: https://shop.example.com/text-only\nYours: {{user.website}}',
  };

  it('are the URLs written in bodies, layouts, partial and helper arguments; URLs from the data are not', () => {
    const r = createTemplateRenderer({ dir: fixture(files) }, silentLogger());
    expect(r.isTemplateLink('https://shop.example.com/sale')).toBe(true);
    expect(r.isTemplateLink('https://shop.example.com/cart')).toBe(true);
    expect(r.isTemplateLink('https://shop.example.com/welcome')).toBe(true);
    expect(r.isTemplateLink('https://example.com/help?from=footer&x=1')).toBe(true);
    expect(r.isTemplateLink('https://shop.example.com/text-only')).toBe(true);
    // A written beginning that fixes the host, completed by the data.
    expect(r.isTemplateLink('https://shop.example.com/orders/42')).toBe(true);
    // A user's own website, and hosts the data could choose.
    expect(r.isTemplateLink('https://evil.example/phish')).toBe(false);
    expect(r.isTemplateLink('https://shop.example.com/sale-and-more')).toBe(false);
    expect(r.isTemplateLink('https://evil.example.com/')).toBe(false);
    expect(r.isTemplateLink('https://shop.example.com.evil.example/x')).toBe(false);
    expect(r.isTemplateLink('https://shop.example.com@evil.example/')).toBe(false);
  });

  it('follow the files: a link removed from a template is no longer one after a reload', () => {
    const dir = fixture(files);
    const r = createTemplateRenderer({ dir }, silentLogger());
    writeFileSync(join(dir, 'promo/email.en.txt.hbs'), 'Yours: {{user.website}}');
    r.reload();
    expect(r.isTemplateLink('https://shop.example.com/text-only')).toBe(false);
    expect(r.isTemplateLink('https://shop.example.com/sale')).toBe(true);
  });
});

describe('watching', () => {
  it('reloads by itself when a content manager saves a file', async () => {
    const dir = fixture({ 'hi/sms.en.hbs': 'v1' });
    const r = createTemplateRenderer({ dir, watch: true }, silentLogger());
    try {
      expect(r.render('hi', 'sms', 'en', data).body).toBe('v1');
      writeFileSync(join(dir, 'hi/sms.en.hbs'), 'v2');
      mkdirSync(join(dir, 'new'));
      writeFileSync(join(dir, 'new/sms.en.hbs'), 'brand new');
      await expect
        .poll(() => r.has('new') && r.render('hi', 'sms', 'en', data).body, {
          timeout: 3000,
          interval: 50,
        })
        .toBe('v2');
      expect(r.render('new', 'sms', 'en', data).body).toBe('brand new');
    } finally {
      r.close();
    }
  });
});

describe('helpers', () => {
  const dir = () =>
    fixture({
      'h/sms.en.hbs': [
        '{{formatDate event.properties.at}}|{{formatDate event.properties.at "datetime"}}|{{formatDate event.properties.at "time" timezone="Asia/Tokyo"}}',
        '{{formatCurrency event.properties.amount "EUR"}}|{{default user.nickname user.firstName}}|{{#if (eq user.plan "trial")}}T{{else}}F{{/if}}',
      ].join('\n'),
    });
  const at = Date.UTC(2026, 0, 31, 23, 30);

  it('format dates and money in the recipient locale and timezone', () => {
    const r = createTemplateRenderer({ dir: dir() }, silentLogger());
    const d = { ...data, event: { type: 'x', properties: { at, amount: 1234.5 } } };
    expect(r.render('h', 'sms', 'en', d).body).toBe(
      'Feb 1, 2026|Feb 1, 2026, 12:30 AM|8:30 AM\n€1,234.50|Ada|T',
    );
    const de = r.render('h', 'sms', 'de', {
      ...d,
      user: { ...user, timezone: 'America/New_York', plan: 'pro' },
    }).body;
    expect(de).toBe('31.01.2026|31.01.2026, 18:30|08:30\n1.234,50\u00a0€|Ada|F');
  });

  it('fall back to English/UTC for a malformed locale or timezone trait instead of failing', () => {
    const r = createTemplateRenderer({ dir: dir() }, silentLogger());
    const d = {
      ...data,
      user: { ...user, timezone: 'Mars/Olympus' },
      event: { type: 'x', properties: { at, amount: 2 } },
    };
    expect(r.render('h', 'sms', 'not a locale!!', d).body).toBe(
      'Jan 31, 2026|Jan 31, 2026, 11:30 PM|8:30 AM\n€2.00|Ada|T',
    );
  });

  it('fail the render on values that are not dates or numbers', () => {
    const r = createTemplateRenderer({ dir: dir() }, silentLogger());
    const err = catchError(() =>
      r.render('h', 'sms', 'en', {
        ...data,
        event: { type: 'x', properties: { at: 'soon', amount: 1 } },
      }),
    );
    expect(err.message).toContain('formatDate: "soon" is not a date');
    const money = catchError(() =>
      r.render('h', 'sms', 'en', {
        ...data,
        event: { type: 'x', properties: { at, amount: 'lots' } },
      }),
    );
    expect(money.message).toContain('formatCurrency: "lots" is not a number');
  });
});

describe('front matter and text conversion', () => {
  it('takes field values verbatim, without quoting rules', () => {
    expect(
      splitFrontMatter(
        '---\nsubject: {{user.firstName}}, "hi": there\n# note\ntitle: "quoted"\n---\nbody\n',
      ),
    ).toEqual({
      meta: { subject: '{{user.firstName}}, "hi": there', title: 'quoted' },
      body: 'body\n',
      bodyLine: 6,
    });
    expect(splitFrontMatter('no front matter')).toEqual({
      meta: {},
      body: 'no front matter',
      bodyLine: 1,
    });
    expect(() => splitFrontMatter('---\njust text\n---\n')).toThrow(/expected `field: text`/);
  });

  it('turns HTML into readable text', () => {
    const html =
      '<html><head><style>p{}</style></head><body><div style="display:none">pre</div><h1>Title</h1><p>A &amp; B&nbsp;&middot; C</p><ul><li>one</li><li>two</li></ul><p><a href="https://x.test/?a=1&amp;b=2">Click</a><br>next</p></body></html>';
    expect(htmlToText(html)).toBe(
      'Title\n\nA & B · C\n\n- one\n- two\n\nClick (https://x.test/?a=1&b=2)\nnext\n',
    );
  });
});
