import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simulateFile, type SimulateFileOptions } from './simulate-file.ts';
import { silentLogger } from '../platform/logger.ts';
import { createTemplateRenderer, SAMPLE_LINKS } from '../delivery/templates/index.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
let dir: string;

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

async function run(opts: Partial<SimulateFileOptions>, stdin?: string) {
  const out = capture();
  const err = capture();
  const input = new PassThrough();
  if (stdin !== undefined) input.end(stdin);
  const res = await simulateFile(
    {
      rules: path.join(dir, 'rules'),
      events: path.join(dir, 'events.jsonl'),
      out: path.join(dir, 'out.jsonl'),
      ...opts,
    },
    { stdout: out.stream, stderr: err.stream, stdin: input },
  );
  return { ...res, stdout: out.text(), stderr: err.text() };
}

const events = [
  {
    type: 'identify',
    userId: 'u1',
    messageId: 'm1',
    timestamp: '2026-03-02T10:00:00Z',
    traits: { plan: 'trial' },
  },
  {
    type: 'track',
    event: 'user_registered',
    userId: 'u1',
    messageId: 'm2',
    timestamp: '2026-03-02T10:00:01Z',
  },
].map((e) => JSON.stringify(e));

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'lc-simfile-'));
  mkdirSync(path.join(dir, 'rules'));
  mkdirSync(path.join(dir, 'bad-rules'));
  writeFileSync(
    path.join(dir, 'rules', 'nudge.json'),
    JSON.stringify({
      id: 'nudge',
      category: 'marketing',
      trigger: { event: 'user_registered', delay: '1d' },
      action: { send: { template: 'nudge', channels: ['email'] } },
    }),
  );
  writeFileSync(
    path.join(dir, 'bad-rules', 'broken.json'),
    JSON.stringify({
      id: 'broken',
      category: 'promo',
      trigger: { event: 'x', delay: '3 days' },
      action: { send: { template: 't', channels: ['email'] } },
    }),
  );
  writeFileSync(path.join(dir, 'events.jsonl'), `${events.join('\n')}\n{oops\n`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('simulate over files', () => {
  it('invalid rules: one file:jsonpath: message line each, exit 1, nothing simulated', async () => {
    const r = await run({ rules: path.join(dir, 'bad-rules') });
    expect(r.exitCode).toBe(1);
    expect(r.summary).toBeNull();
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const l of lines) expect(l).toMatch(/^.*broken\.json:\$[^:]*: .+/);
    expect(r.stderr).toContain('$.category');
    expect(r.stderr).toContain('$.trigger.delay');
  });

  it('--until fires the timers left at the end; bad lines are reported and skipped (exit 0, or 1 with --strict)', async () => {
    const without = await run({});
    expect(without.exitCode).toBe(0);
    expect(readFileSync(path.join(dir, 'out.jsonl'), 'utf8')).toBe('');
    expect(without.summary!.timersPending).toBe(1);
    expect(without.stdout).toMatch(/line 3: not JSON/);

    const withUntil = await run({ until: '2026-03-04T00:00:00Z' });
    const sends = readFileSync(path.join(dir, 'out.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(sends).toMatchObject([
      {
        ruleId: 'nudge',
        userId: 'u1',
        createdAt: '2026-03-03T10:00:01.000Z',
        triggeredBy: { eventId: 'm2', eventType: 'user_registered' },
      },
    ]);
    expect(withUntil.stdout).toContain('virtual clock at end: 2026-03-04T00:00:00.000Z');

    expect((await run({ strict: true })).exitCode).toBe(1);
  });

  it('stdin to stdout: sends on stdout, the summary on stderr', async () => {
    const r = await run(
      { events: '-', out: '-', until: '2026-03-04T00:00:00Z' },
      events.join('\n'),
    );
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ ruleId: 'nudge' });
    expect(r.stderr).toContain('sends: 1');
  });

  it('argument errors say what is wrong', async () => {
    expect((await run({ until: 'next week' })).stderr).toMatch(
      /--until: "next week" is not an ISO date/,
    );
    expect((await run({ events: path.join(dir, 'missing.jsonl') })).stderr).toMatch(
      /--events: cannot read/,
    );
    expect((await run({ out: path.join(dir, 'no-such-dir', 'out.jsonl') })).stderr).toMatch(
      /--out: cannot write/,
    );
  });

  it('the lifecycle command runs it', async () => {
    const { stdout } = await promisify(execFile)(
      path.join(ROOT, 'bin', 'lifecycle'),
      [
        'simulate',
        '--rules',
        path.join(dir, 'rules'),
        '--events',
        path.join(dir, 'events.jsonl'),
        '--out',
        path.join(dir, 'cli.jsonl'),
        '--until',
        '2026-03-04T00:00:00Z',
      ],
      { cwd: ROOT },
    );
    expect(stdout).toContain('sends: 1');
    expect(readFileSync(path.join(dir, 'cli.jsonl'), 'utf8')).toContain('"ruleId":"nudge"');
    const bad = await promisify(execFile)(
      path.join(ROOT, 'bin', 'lifecycle'),
      [
        'simulate',
        '--rules',
        path.join(dir, 'bad-rules'),
        '--events',
        path.join(dir, 'events.jsonl'),
        '--out',
        path.join(dir, 'cli.jsonl'),
      ],
      { cwd: ROOT },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/broken\.json:\$\.category: /);
  }, 30_000);
});

describe('simulate with a digest rule', () => {
  const week = [
    {
      type: 'identify',
      userId: 'ada',
      traits: {
        email: 'ada@example.com',
        firstName: 'Ada',
        locale: 'de',
        timezone: 'Europe/Berlin',
      },
      timestamp: '2026-03-03T08:00:00Z',
    },
    {
      type: 'identify',
      userId: 'bo',
      traits: { email: 'bo@example.com' },
      timestamp: '2026-03-03T08:00:00Z',
    },
    {
      type: 'track',
      event: 'Feature Used',
      userId: 'ada',
      properties: { feature: '<b>export</b>', secret: 's3' },
      timestamp: '2026-03-03T10:00:00Z',
    },
    {
      type: 'track',
      event: 'export_done',
      userId: 'ada',
      properties: { format: 'pdf' },
      timestamp: '2026-03-05T16:30:00Z',
    },
    {
      type: 'track',
      event: 'Feature Used',
      userId: 'ada',
      properties: { feature: 'share' },
      timestamp: '2026-03-06T09:15:00Z',
    },
    { type: 'track', event: 'app_opened', userId: 'bo', timestamp: '2026-03-06T09:15:00Z' },
  ].map((e, i) => JSON.stringify({ ...e, messageId: `w${i}` }));

  it('writes the items of the window as the send data, reports the skipped users, and the shipped template renders them', async () => {
    const rules = path.join(dir, 'digest-rules');
    mkdirSync(rules, { recursive: true });
    writeFileSync(
      path.join(rules, 'digest.json'),
      JSON.stringify({
        id: 'weekly-digest',
        category: 'marketing',
        trigger: { schedule: '0 9 * * 1', timezone: 'user' },
        action: {
          send: {
            template: 'weekly_digest',
            channels: ['email'],
            digest: {
              events: ['Feature Used', 'export_done'],
              window: '7d',
              properties: ['feature', 'format'],
            },
          },
        },
      }),
    );
    writeFileSync(path.join(dir, 'week.jsonl'), `${week.join('\n')}\n`);
    const r = await run({
      rules,
      templates: path.join(ROOT, 'templates'),
      events: path.join(dir, 'week.jsonl'),
      out: path.join(dir, 'digest.jsonl'),
      until: '2026-03-10T00:00:00Z',
    });
    expect(r.exitCode).toBe(0);
    // Bo opened the app but used nothing the digest lists: skipped, not sent.
    expect(r.stdout).toMatch(
      /weekly-digest +1 sends +0 holdout +1 skipped \(digest below minItems\)/,
    );
    const sends = readFileSync(path.join(dir, 'digest.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as { userId: string; createdAt: string; data: Record<string, unknown> },
      );
    expect(sends.map((s) => [s.userId, s.createdAt])).toEqual([
      ['ada', '2026-03-09T08:00:00.000Z'],
    ]);
    const data = sends[0]!.data;
    expect(data.digest).toMatchObject({
      window: '7d',
      total: 3,
      more: false,
      items: [
        {
          type: 'Feature Used',
          ts: Date.parse('2026-03-06T09:15:00Z'),
          properties: { feature: 'share' },
        },
        {
          type: 'export_done',
          ts: Date.parse('2026-03-05T16:30:00Z'),
          properties: { format: 'pdf' },
        },
        {
          type: 'Feature Used',
          ts: Date.parse('2026-03-03T10:00:00Z'),
          properties: { feature: '<b>export</b>' },
        },
      ],
      types: [
        { type: 'Feature Used', count: 2 },
        { type: 'export_done', count: 1 },
      ],
    });

    // What delivery would make of it, with the shipped template, in Ada's language and zone.
    const renderer = createTemplateRenderer({ dir: path.join(ROOT, 'templates') }, silentLogger());
    const email = renderer.render('weekly_digest', 'email', 'de', { ...data, links: SAMPLE_LINKS });
    expect(email.subject).toBe('Ihre Woche bei Example: 3 Aktivitäten');
    expect(email.html).toContain('Genutzte Funktionen: 2');
    expect(email.html).toContain('Exporte: 1');
    expect(email.html).toContain('05.03.2026, 17:30 · pdf');
    expect(email.html).toContain('&lt;b&gt;export&lt;/b&gt;');
    expect(email.html).not.toContain('<b>export');
    expect(email.html).not.toContain('s3');
  });
});
