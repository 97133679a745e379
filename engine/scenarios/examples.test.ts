// The shipped example rules over a few thousand generated Segment-style events, through the
// same path as `lifecycle simulate`: every send is checked against what a product owner
// predicts by reading rules/examples/ and knowing what each generated user did.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateEvents,
  type GeneratedEvents,
  type GeneratedUser,
} from '../../test/support/generate-events.ts';
import { simulateFile } from '../simulate-file.ts';
import type { SimulationSummary } from '../core/simulate.ts';
import { scheduleOccurrences } from '../core/schedule.ts';
import type { RuleDefinition } from '../../rules/index.ts';

const DAY = 86_400_000;
const RULES = path.resolve(import.meta.dirname, '../../rules/examples');
const TEMPLATES = path.resolve(import.meta.dirname, '../../templates');

interface OutputSend {
  sendId: string;
  data: Record<string, unknown>;
  ruleId: string;
  userId: string;
  template: string;
  channels: string[];
  variant: string | null;
  holdout: boolean;
  triggeredBy: { eventId: string; eventType: string };
  createdAt: string;
}

let dir: string;
let gen: GeneratedEvents;
let sends: OutputSend[];
let summary: SimulationSummary;
let stdout = '';
let until: number;
const byUser = new Map<string, GeneratedUser>();

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

async function simulate(outName: string): Promise<{
  exitCode: number;
  summary: SimulationSummary | null;
  stdout: string;
  stderr: string;
}> {
  const out = capture();
  const err = capture();
  const res = await simulateFile(
    {
      rules: RULES,
      templates: TEMPLATES,
      events: path.join(dir, 'events.jsonl'),
      out: path.join(dir, outName),
      until: new Date(until).toISOString(),
    },
    { stdout: out.stream, stderr: err.stream },
  );
  return { ...res, stdout: out.text(), stderr: err.text() };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'lc-simulate-'));
  gen = generateEvents({ users: 600, seed: 7 });
  for (const u of gen.users) byUser.set(u.userId, u);
  until = gen.start + 80 * DAY;
  writeFileSync(path.join(dir, 'events.jsonl'), `${gen.lines.join('\n')}\n`);
  const res = await simulate('sends.jsonl');
  expect(res.exitCode).toBe(0);
  summary = res.summary!;
  stdout = res.stdout;
  sends = readFileSync(path.join(dir, 'sends.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as OutputSend);
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What the example digest lists for a user at an occurrence: feature uses and exports of the 7 days before. */
function digestItems(u: GeneratedUser, o: number): [string, number][] {
  const inWindow = (t: number) => t > o - 7 * DAY && t <= o;
  return [
    ...u.featureUses.filter(inWindow).map((t): [string, number] => ['Feature Used', t]),
    ...(u.exportAt !== null && inWindow(u.exportAt)
      ? [['export_done', u.exportAt] as [string, number]]
      : []),
  ];
}

const of = (ruleId: string) => sends.filter((s) => s.ruleId === ruleId);
const users = (p: (u: GeneratedUser) => boolean) => gen.users.filter(p);
const iso = (t: number) => new Date(t).toISOString();
/** user -> sorted createdAt list, for exact comparisons. */
function schedule(list: OutputSend[]): Record<string, string[]> {
  const m: Record<string, string[]> = {};
  for (const s of list) (m[s.userId] ??= []).push(s.createdAt);
  for (const k of Object.keys(m)) m[k]!.sort();
  return m;
}
function expected(
  list: GeneratedUser[],
  times: (u: GeneratedUser) => number[],
): Record<string, string[]> {
  const m: Record<string, string[]> = {};
  for (const u of list) {
    const t = times(u);
    if (t.length > 0) m[u.userId] = t.map(iso).sort();
  }
  return m;
}

describe('simulate: example rules over generated events', () => {
  it('reads a few thousand lines, skips duplicates and reports bad lines by number', () => {
    expect(gen.lines.length).toBeGreaterThan(4000);
    expect(summary.lines).toBe(gen.lines.length);
    expect(summary.duplicates).toBe(gen.duplicateLines.length);
    expect(summary.duplicates).toBeGreaterThan(20);
    expect(summary.invalid.map((i) => i.line)).toEqual(gen.invalidLines);
    expect(summary.events).toBe(
      gen.lines.length - gen.duplicateLines.length - gen.invalidLines.length,
    );
    expect(stdout).toContain(`duplicates skipped: ${summary.duplicates}`);
    for (const id of ['welcome', 'trial-activation-day3', 'payment-failed'])
      expect(stdout).toMatch(new RegExp(`\\n  ${id} +\\d+ sends`));
  });

  it('writes each send once, with the fields other tools rely on and ISO times', () => {
    expect(new Set(sends.map((s) => s.sendId)).size).toBe(sends.length);
    expect(sends.length).toBe(summary.sends);
    for (const s of sends) {
      expect(Object.keys(s)).toEqual(
        expect.arrayContaining([
          'sendId',
          'ruleId',
          'userId',
          'template',
          'channels',
          'variant',
          'holdout',
          'triggeredBy',
          'createdAt',
        ]),
      );
      expect(s.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(typeof s.triggeredBy.eventId).toBe('string');
    }
  });

  it('welcome: every registered user with an email gets exactly one, at sign-up; users without an email get none', () => {
    expect(schedule(of('welcome'))).toEqual(
      expected(
        users((u) => u.email !== null),
        (u) => [u.registeredAt + 1000],
      ),
    );
  });

  it('activation tip: trial users still on trial who did not export get it 3 days after sign-up (10% held out, variants a/b); exporters, subscribers, payers and deleted users do not', () => {
    const list = of('trial-activation-day3');
    expect(schedule(list)).toEqual(
      expected(
        users((u) => u.persona === 'trial-idle' || u.persona === 'no-email'),
        (u) => [u.registeredAt + 1000 + 3 * DAY],
      ),
    );
    const held = list.filter((s) => s.holdout).length / list.length;
    expect(held).toBeGreaterThan(0.03);
    expect(held).toBeLessThan(0.2);
    for (const s of list) {
      if (s.holdout) expect(s.variant).toBeNull();
      else expect(s.template).toBe(s.variant === 'b' ? 'activation_tip_b' : 'activation_tip');
    }
    expect(new Set(list.map((s) => s.variant))).toEqual(new Set([null, 'a', 'b']));
    // Delayed: attributed to the registration, not to a timer.
    for (const s of list) expect(s.triggeredBy.eventType).toBe('user_registered');
  });

  it('trial ending: those billing warned get the reminder then; the day-11 fallback goes only to trial users never warned', () => {
    expect(schedule(of('trial-ending'))).toEqual(
      expected(
        users((u) => u.trialEndsSoonAt !== null),
        (u) => [u.trialEndsSoonAt!],
      ),
    );
    expect(schedule(of('trial-ending-fallback'))).toEqual(
      expected(
        users((u) => u.persona === 'trial-idle' || u.persona === 'no-email'),
        (u) => [u.registeredAt + 1000 + 11 * DAY],
      ),
    );
  });

  it('payment failed: only real renewals (amount > 0) of paying plans, not again within 12 hours', () => {
    expect(schedule(of('payment-failed'))).toEqual(
      expected(
        users((u) => u.persona === 'payer'),
        (u) => [u.paymentFailures[0]!, u.paymentFailures[2]!],
      ),
    );
    for (const s of of('payment-failed')) expect(s.channels).toEqual(['email', 'push']);
  });

  it('weekly digest: Monday 09:00 in each user timezone, only users who opened the app in the 7 days before and used a feature or exported in them, never to those who opted out', () => {
    const digest = JSON.parse(
      readFileSync(path.join(RULES, 'weekly-digest.json'), 'utf8'),
    ) as RuleDefinition;
    const mondays = new Map<string, number[]>();
    const predicted = expected(gen.users, (u) => {
      const zone = u.timezone ?? 'UTC';
      if (!mondays.has(zone))
        mondays.set(zone, scheduleOccurrences(digest, gen.start, until, zone));
      return mondays
        .get(zone)!
        .filter(
          (o) =>
            !u.digestOptOut &&
            u.registeredAt <= o &&
            (u.deletedAt === null || o < u.deletedAt) &&
            u.appOpens.some((t) => t >= o - 7 * DAY && t < o) &&
            digestItems(u, o).length > 0,
        );
    });
    expect(Object.keys(predicted).length).toBeGreaterThan(100);
    expect(schedule(of('weekly-digest'))).toEqual(predicted);
    // Active users with nothing to tell were skipped, not sent an empty digest.
    expect(summary.byRule['weekly-digest']?.skipped).toBeGreaterThan(50);
    for (const s of of('weekly-digest')) {
      const digest = s.data.digest as { total: number; items: { type: string; ts: number }[] };
      const items = digestItems(byUser.get(s.userId)!, Date.parse(s.createdAt));
      expect(digest.total).toBe(items.length);
      expect(digest.items.map((i) => [i.type, i.ts])).toEqual(
        items.sort((a, b) => b[1] - a[1] || (a[0] === 'Feature Used' ? -1 : 1)),
      );
    }
    for (const s of of('weekly-digest')) {
      const zone = byUser.get(s.userId)!.timezone ?? 'UTC';
      const local = new Intl.DateTimeFormat('en-GB', {
        timeZone: zone,
        weekday: 'short',
        hour: '2-digit',
        minute: '2-digit',
        hourCycle: 'h23',
      }).format(new Date(s.createdAt));
      expect(local).toBe('Mon 09:00');
    }
  });

  it('winback: subscribers who stop opening the app get it when 30 days have passed, with no event needed; trial users never', () => {
    const list = of('winback-30d');
    expect(schedule(list)).toEqual(
      expected(
        users((u) => u.persona === 'converter'),
        (u) => {
          const at = Math.max(...u.appOpens) + 30 * DAY + 1;
          return at <= until ? [at] : [];
        },
      ),
    );
    expect(list.length).toBeGreaterThan(50);
    for (const s of list) expect(s.triggeredBy.eventType).toBe('segment.entered');
  });

  it('deleted users get nothing after their deletion', () => {
    for (const u of users((x) => x.deletedAt !== null)) {
      for (const s of sends.filter((x) => x.userId === u.userId))
        expect(Date.parse(s.createdAt)).toBeLessThan(u.deletedAt!);
    }
  });

  it('the same input gives the same output, byte for byte', async () => {
    const again = await simulate('sends-again.jsonl');
    expect(again.exitCode).toBe(0);
    expect(readFileSync(path.join(dir, 'sends-again.jsonl'), 'utf8')).toBe(
      readFileSync(path.join(dir, 'sends.jsonl'), 'utf8'),
    );
  });
});
