// `lifecycle backtest` over a history stored in ClickHouse (server and chDB): the example
// rules replayed from the first event, sends reported only inside the window, state from
// before the window honoured (oncePerUser), delays firing inside or outside the window,
// engine-made events in the store ignored, every row stored twice counted once, a disabled
// draft evaluated, and the live sends compared by sendId.
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChdbStore, type AnalyticsStore } from './store.ts';
import type { NormalisedEvent, SendCommand } from '../platform/contracts.ts';
import { createTestDatabase, type TestDatabase } from '../test/support/clickhouse.ts';
import { isolate } from '../test/support/isolation.ts';
import { sendIdFor } from '../engine/core/ids.ts';
import { backtest, type BacktestReport } from './backtest.ts';
import { ensureSchema, eventRow, sendRow } from './schema.ts';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 2, 1, 9, 0, 0);
const FROM = T0 + 10 * DAY;
const TO = T0 + 20 * DAY;
const iso = isolate('backtest');

const ev = (
  id: string,
  userId: string,
  type: string,
  ts: number,
  extra: Partial<NormalisedEvent> = {},
): NormalisedEvent => ({
  id: `${iso.id}-${id}`,
  userId,
  type,
  ts,
  receivedAt: ts,
  source: 'http:web',
  properties: {},
  ...extra,
});
const signup = (n: string, userId: string, ts: number) => [
  // Same timestamp for both: pages of history must not drop ties.
  ev(`${n}-identify`, userId, 'identify', ts, {
    traits: { email: `${userId}@example.com`, plan: 'trial' },
  }),
  ev(`${n}-registered`, userId, 'user_registered', ts),
];
const EVENTS: NormalisedEvent[] = [
  ...signup('u1', 'u1', T0), // before the window: its welcome and its day-3 nudge are not reported
  ...signup('u2', 'u2', T0 + 12 * DAY), // welcome at +12d, nudge at +15d: both in the window
  ...signup('u3', 'u3', T0 + 18 * DAY), // welcome in the window, nudge at +21d: after it
  ...signup('u4', 'u4', T0 + 12 * DAY), // welcome; exports at +13d: no nudge
  ev('u4-export', 'u4', 'export_done', T0 + 13 * DAY),
  ...signup('u5a', 'u5', T0), // registered before the window...
  ev('u5b-registered', 'u5', 'user_registered', T0 + 12 * DAY), // ...and again inside: welcome is oncePerUser
  // What the engine itself wrote to the events topic: the replay makes its own.
  ev('u1-timer', 'u1', 'timer.fired', T0 + 3 * DAY, {
    properties: { ruleId: 'trial-activation-day3' },
  }),
  ev('u1-segment', 'u1', 'segment.entered', T0 + DAY, { properties: { segment: 'active_7d' } }),
];
const registered = (userId: string, n = userId) => `${iso.id}-${n}-registered`;

let rulesDir: string;

beforeAll(async () => {
  rulesDir = await mkdtemp(join(tmpdir(), 'lc-backtest-rules-'));
  await cp(join(import.meta.dirname, '../rules/examples'), rulesDir, { recursive: true });
  // A draft, kept disabled in its file: the backtest evaluates it anyway.
  await writeFile(
    join(rulesDir, 'export-thanks.json'),
    JSON.stringify({
      id: 'export-thanks',
      enabled: false,
      category: 'transactional',
      priority: 10,
      trigger: { event: 'export_done' },
      conditions: { all: [] },
      action: { send: { template: 'welcome', channels: ['email'] } },
    }),
  );
});
afterAll(async () => {
  if (rulesDir) await rm(rulesDir, { recursive: true, force: true });
});

async function load(store: AnalyticsStore, db: string): Promise<void> {
  await ensureSchema(store, db, { payloadTtlDays: 30 });
  // Stored twice (a sink replay not merged yet).
  for (let round = 0; round < 2; round++) await store.insert(`${db}.events`, EVENTS.map(eventRow));
  // The live welcome rule sent to u2 (same sendId as the replay's) and to someone the replay does not know.
  const live = (sendId: string, userId: string): SendCommand => ({
    sendId,
    ruleId: 'welcome',
    userId,
    category: 'transactional',
    priority: 90,
    template: 'welcome',
    channels: ['email'],
    variant: null,
    holdout: false,
    triggeredBy: { eventId: 'x', eventType: 'user_registered' },
    createdAt: T0 + 12 * DAY,
    expiresAt: null,
    data: {},
  });
  await store.insert(`${db}.sends`, [
    sendRow(live(sendIdFor('welcome', 'u2', registered('u2')), 'u2')),
    sendRow(live('live-only', 'u9')),
  ]);
}

async function run(store: AnalyticsStore, db: string, rule: string, out?: string) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const text = { out: '', err: '' };
  stdout.on('data', (c: Buffer) => (text.out += c.toString()));
  stderr.on('data', (c: Buffer) => (text.err += c.toString()));
  const r = await backtest(
    {
      rule,
      from: new Date(FROM).toISOString(),
      to: new Date(TO).toISOString(),
      rules: rulesDir,
      pageSize: 3,
      ...(out ? { out } : {}),
    },
    { store, database: db },
    { stdout, stderr },
  );
  return { ...r, ...text };
}

async function check(store: AnalyticsStore, db: string): Promise<void> {
  const outFile = join(rulesDir, `welcome-${db}.jsonl`);
  const welcome = await run(store, db, 'welcome', outFile);
  expect(welcome.exitCode).toBe(0);
  const sends = (await readFile(outFile, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as SendCommand & { createdAt: string });
  expect(sends.map((s) => s.userId).sort()).toEqual(['u2', 'u3', 'u4']);
  expect(sends.find((s) => s.userId === 'u2')).toMatchObject({
    sendId: sendIdFor('welcome', 'u2', registered('u2')),
    template: 'welcome',
    createdAt: new Date(T0 + 12 * DAY).toISOString(),
  });
  expect(welcome.report).toMatchObject<Partial<BacktestReport>>({
    rule: 'welcome',
    eventsReplayed: EVENTS.length - 2,
    eventsInWindow: 8,
    users: 5,
    sends: 3,
    holdouts: 0,
    recipients: 3,
    byTemplate: { 'welcome via email': 3 },
    live: { sends: 2, both: 1, onlyBacktest: 2, onlyLive: 1 },
  });
  expect(welcome.out).toContain('would send: 3 to 3 users, plus 0 holdout');
  expect(welcome.out).toContain('same sendId in both: 1, only in the backtest: 2, only live: 1');

  // The delayed nudge: u2's fires inside the window, u3's after it, u4 exported, u1's before.
  const nudge = await run(store, db, 'trial-activation-day3');
  expect(nudge.report!.sends).toBe(1);
  expect(Object.values(nudge.report!.byVariant)).toEqual([1]);

  const draft = await run(store, db, 'export-thanks');
  expect(draft.report!.sends).toBe(1);
  expect(draft.out).toContain('disabled in its file: evaluated as if enabled');
}

describe('lifecycle backtest', () => {
  let server: TestDatabase;
  let chdb: AnalyticsStore;
  let chdbDir: string;

  beforeAll(async () => {
    server = await createTestDatabase(iso.config());
    chdbDir = await mkdtemp(join(tmpdir(), 'lc-chdb-backtest-'));
    chdb = await createChdbStore({ path: chdbDir });
  });
  afterAll(async () => {
    await server?.drop();
    await chdb?.close();
    if (chdbDir) await rm(chdbDir, { recursive: true, force: true });
  });

  it('reports what a rule would have sent in the window, on the ClickHouse server', async () => {
    await load(server.store, server.database);
    await check(server.store, server.database);
  });

  it('gives the same answers on chDB', async () => {
    const db = iso.clickhouseDatabase;
    await chdb.command(`CREATE DATABASE IF NOT EXISTS ${db}`);
    await load(chdb, db);
    await check(chdb, db);
  });

  it('says what to fix: unknown rule, bad dates, a window that ends before it starts', async () => {
    const bad = async (over: Partial<{ rule: string; from: string; to: string }>) => {
      const stderr = new PassThrough();
      let err = '';
      stderr.on('data', (c: Buffer) => (err += c.toString()));
      const r = await backtest(
        {
          rule: 'welcome',
          from: new Date(FROM).toISOString(),
          to: new Date(TO).toISOString(),
          rules: rulesDir,
          ...over,
        },
        { store: server.store, database: server.database },
        { stdout: new PassThrough(), stderr },
      );
      expect(r.exitCode).toBe(1);
      return err;
    };
    expect(await bad({ rule: 'nope' })).toMatch(
      /--rule: no rule "nope" in .* \(rules there: .*welcome/,
    );
    expect(await bad({ from: 'yesterday' })).toMatch(/--from: "yesterday" is not an ISO date/);
    expect(await bad({ to: new Date(FROM - DAY).toISOString() })).toMatch(
      /--to .* must be after --from/,
    );
  });

  it('runs as `lifecycle backtest` against the configured store', async () => {
    const exec = promisify(execFile);
    const env = { ...process.env, ...iso.env, LC_CLICKHOUSE_DATABASE: server.database };
    const { stdout, stderr } = await exec(
      join(import.meta.dirname, '../bin/lifecycle'),
      [
        'backtest',
        '--rule',
        'welcome',
        '--from',
        new Date(FROM).toISOString(),
        '--to',
        new Date(TO).toISOString(),
        '--rules',
        rulesDir,
      ],
      { env },
    );
    expect(stdout).toContain('backtest of rule welcome');
    expect(stdout).toContain('would send: 3 to 3 users');
    expect(stderr).toBe('');
    const help = await exec(join(import.meta.dirname, '../bin/lifecycle'), ['backtest', '--help'], {
      env,
    });
    expect(help.stdout).toContain('--rule <id>');
  });
});
