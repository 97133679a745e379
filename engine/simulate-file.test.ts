import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simulateFile, type SimulateFileOptions } from './simulate-file.ts';

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
