// The message log's queries on the ClickHouse server (18.16 here) and on chDB, with every
// row stored twice (a replay not merged yet): a user's messages page by page, newest first,
// through a cursor that a newer message does not shift; search by address and by sendId;
// one send with each channel's content and its history (delivery's outcomes and the
// tracker's opens and clicks); bodies past their TTL never shown, then emptied in storage
// (a column TTL on chDB, the sink's mutation on 18.16) while the metadata stays.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  Channel,
  DeliveryOutcome,
  DeliveryStatus,
  MessageRecord,
  NormalisedEvent,
  SendCommand,
} from '../platform/contracts.ts';
import { createTestDatabase, type TestDatabase } from '../test/support/clickhouse.ts';
import { isolate } from '../test/support/isolation.ts';
import { waitFor } from '../test/support/wait.ts';
import { pendingMutations } from './erasure.ts';
import { listMessages, messageDetail, type MessageSummary } from './messages.ts';
import {
  deliveryRow,
  ensureSchema,
  eventRow,
  expireMessageBodies,
  messageRow,
  sendRow,
} from './schema.ts';
import { createChdbStore, type EngineAnalyticsStore } from './store.ts';

const NOW = Date.now();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const TTL = { bodyTtlDays: 30, now: NOW };

function send(sendId: string, userId: string, createdAt: number, over: Partial<SendCommand> = {}) {
  const s: SendCommand = {
    sendId,
    ruleId: sendId.split(':')[0]!,
    userId,
    category: 'marketing',
    priority: 50,
    template: 'welcome',
    channels: ['email'],
    variant: null,
    holdout: false,
    triggeredBy: { eventId: `e-${sendId}`, eventType: 'user_registered' },
    createdAt,
    expiresAt: null,
    data: { user: { email: `${userId}@example.com`, firstName: userId } },
    ...over,
  };
  return s;
}

function outcome(
  s: SendCommand,
  channel: Channel,
  status: DeliveryStatus,
  ts: number,
  reason: string | null = null,
): DeliveryOutcome {
  return {
    id: `${s.sendId}:${channel}:${status}`,
    sendId: s.sendId,
    ruleId: s.ruleId,
    userId: s.userId,
    channel,
    status,
    reason,
    provider: status === 'sent' ? 'smtp-1' : null,
    attempt: status === 'sent' ? 1 : 0,
    ts,
    variant: null,
    holdout: s.holdout,
  };
}

function logged(s: SendCommand, to: string, ts: number): MessageRecord {
  return {
    id: `${s.sendId}:email`,
    sendId: s.sendId,
    userId: s.userId,
    ruleId: s.ruleId,
    campaignId: null,
    category: s.category,
    channel: 'email',
    template: s.template,
    templateVersion: 2,
    locale: 'en',
    to,
    subject: `Subject of ${s.sendId}`,
    html: `<p>Body of ${s.sendId}</p>`,
    text: `Body of ${s.sendId}`,
    content: {},
    data: s.data,
    origin: null,
    ts,
  };
}

function tracked(s: SendCommand, type: string, ts: number, url?: string): NormalisedEvent {
  return {
    id: `tracker:${type}:${s.sendId}:email:${ts}`,
    userId: s.userId,
    type,
    ts,
    receivedAt: ts,
    source: 'tracker',
    properties: {
      sendId: s.sendId,
      ruleId: s.ruleId,
      channel: 'email',
      category: s.category,
      variant: null,
      ...(url ? { url } : {}),
    },
  };
}

// Ada: a welcome on email and SMS (the email sent, opened and clicked; the SMS suppressed), a
// marketing email without opt-in, a holdout, one 40 days old (its body past the TTL), and five
// more emails; Bob: one email.
const welcome = send('welcome:ada:1', 'ada', NOW - 5 * HOUR, { channels: ['email', 'sms'] });
const noOptIn = send('winback:ada:2', 'ada', NOW - 4 * HOUR);
const holdout = send('tip:ada:3', 'ada', NOW - 3 * HOUR, { holdout: true });
const old = send('welcome:ada:0', 'ada', NOW - 40 * DAY);
const more = [5, 6, 7, 8, 9].map((i) => send(`digest:ada:${i}`, 'ada', NOW - 2 * HOUR + i * 1000));
const bob = send('welcome:bob:1', 'bob', NOW - 5 * HOUR);
const SENDS = [welcome, noOptIn, holdout, old, ...more, bob];

const MESSAGES = [
  logged(welcome, 'Ada@Example.com', welcome.createdAt + 1000),
  logged(old, 'ada@example.com', old.createdAt + 1000),
  ...more.map((s) => logged(s, 'ada@example.com', s.createdAt + 1000)),
  logged(bob, 'bob@example.com', bob.createdAt + 1000),
];

const DELIVERIES = [
  outcome(welcome, 'email', 'queued', welcome.createdAt),
  outcome(welcome, 'email', 'sent', welcome.createdAt + 1000),
  outcome(welcome, 'email', 'delivered', welcome.createdAt + 2000),
  outcome(welcome, 'email', 'opened', welcome.createdAt + HOUR),
  outcome(welcome, 'sms', 'queued', welcome.createdAt),
  outcome(welcome, 'sms', 'suppressed', welcome.createdAt, 'no_address:sms'),
  outcome(noOptIn, 'email', 'queued', noOptIn.createdAt),
  outcome(noOptIn, 'email', 'suppressed', noOptIn.createdAt, 'no_opt_in:marketing:email'),
  outcome(holdout, 'email', 'holdout', holdout.createdAt, 'holdout group'),
  outcome(old, 'email', 'sent', old.createdAt + 1000),
  ...more.map((s) => outcome(s, 'email', 'sent', s.createdAt + 1000)),
  outcome(bob, 'email', 'sent', bob.createdAt + 1000),
];

const EVENTS = [
  // The tracker publishes an event and an outcome for an open; the click only as an event here.
  tracked(welcome, 'message_opened', welcome.createdAt + HOUR),
  tracked(
    welcome,
    'message_clicked',
    welcome.createdAt + 2 * HOUR,
    'https://app.example.com/start',
  ),
  // An app cannot send message_* (reserved for the tracker): a forged one is not history.
  { ...tracked(welcome, 'message_clicked', welcome.createdAt + 3 * HOUR), source: 'http:web' },
];

async function load(store: EngineAnalyticsStore, db: string): Promise<void> {
  await ensureSchema(store, db, { payloadTtlDays: 30, messageBodyTtlDays: 30 });
  for (let round = 0; round < 2; round++) {
    await store.insert(`${db}.sends`, SENDS.map(sendRow));
    await store.insert(`${db}.messages`, MESSAGES.map(messageRow));
    await store.insert(`${db}.deliveries`, DELIVERIES.map(deliveryRow));
    await store.insert(`${db}.events`, EVENTS.map(eventRow));
  }
}

const ids = (items: MessageSummary[]) => items.map((m) => `${m.sendId}/${m.channel}`);

async function checkLog(store: EngineAnalyticsStore, db: string): Promise<void> {
  // Page by page, newest first; a message arriving between pages does not shift the rest.
  const pages: MessageSummary[][] = [];
  let cursor: string | undefined;
  do {
    const page = await listMessages(
      store,
      db,
      { userId: 'ada', limit: 3, ...(cursor ? { cursor } : {}) },
      TTL,
    );
    pages.push(page.messages);
    cursor = page.next ?? undefined;
    if (pages.length === 1) {
      const newer = send('late:ada:10', 'ada', NOW - 1000);
      await store.insert(`${db}.sends`, [sendRow(newer)]);
    }
  } while (cursor);
  const all = pages.flat();
  expect(pages.map((p) => p.length)).toEqual([3, 3, 3, 1]);
  expect(ids(all)).toEqual([
    ...[...more].reverse().map((s) => `${s.sendId}/email`),
    `${holdout.sendId}/email`,
    `${noOptIn.sendId}/email`,
    `${welcome.sendId}/sms`,
    `${welcome.sendId}/email`,
    `${old.sendId}/email`,
  ]);
  // The newer message is on a fresh first page.
  const fresh = await listMessages(store, db, { userId: 'ada', limit: 1 }, TTL);
  expect(ids(fresh.messages)).toEqual(['late:ada:10/email']);

  const byId = new Map(all.map((m) => [`${m.sendId}/${m.channel}`, m]));
  expect(byId.get(`${welcome.sendId}/email`)).toEqual({
    sendId: welcome.sendId,
    channel: 'email',
    userId: 'ada',
    ruleId: 'welcome',
    campaignId: null,
    category: 'marketing',
    template: 'welcome',
    templateVersion: 2,
    locale: 'en',
    to: 'Ada@Example.com',
    subject: `Subject of ${welcome.sendId}`,
    origin: null,
    holdout: false,
    createdAt: welcome.createdAt,
    sentAt: welcome.createdAt + 1000,
    status: 'opened',
    reason: null,
  });
  expect(byId.get(`${welcome.sendId}/sms`)).toMatchObject({
    to: null,
    subject: null,
    sentAt: null,
    status: 'suppressed',
    reason: 'no_address:sms',
  });
  expect(byId.get(`${noOptIn.sendId}/email`)).toMatchObject({
    status: 'suppressed',
    reason: 'no_opt_in:marketing:email',
  });
  expect(byId.get(`${holdout.sendId}/email`)).toMatchObject({ holdout: true, status: 'holdout' });
  // Past the body TTL: the metadata stays, the subject is not shown.
  expect(byId.get(`${old.sendId}/email`)).toMatchObject({
    to: 'ada@example.com',
    subject: null,
    status: 'sent',
  });

  // Search by address (an email address in any case) and by sendId, exact or its beginning.
  const byAddress = await listMessages(store, db, { to: 'ADA@example.COM', limit: 50 }, TTL);
  expect(ids(byAddress.messages).sort()).toEqual(
    [welcome, old, ...more].map((s) => `${s.sendId}/email`).sort(),
  );
  expect(
    ids((await listMessages(store, db, { to: 'bob@example.com', limit: 50 }, TTL)).messages),
  ).toEqual([`${bob.sendId}/email`]);
  expect(
    ids((await listMessages(store, db, { sendId: 'welcome:', limit: 50 }, TTL)).messages),
  ).toEqual([
    // Created at the same time: by sendId, then channel, descending.
    `${bob.sendId}/email`,
    `${welcome.sendId}/sms`,
    `${welcome.sendId}/email`,
    `${old.sendId}/email`,
  ]);
  expect(
    ids((await listMessages(store, db, { sendId: noOptIn.sendId, limit: 50 }, TTL)).messages),
  ).toEqual([`${noOptIn.sendId}/email`]);
  expect(
    ids(
      (await listMessages(store, db, { userId: 'ada', since: NOW - 4 * HOUR, limit: 50 }, TTL))
        .messages,
    ),
  ).not.toContain(`${welcome.sendId}/email`);

  // One send: each channel's content and its history, opens and clicks included, once each.
  const detail = await messageDetail(store, db, welcome.sendId, TTL);
  expect(detail).toMatchObject({
    sendId: welcome.sendId,
    userId: 'ada',
    ruleId: 'welcome',
    category: 'marketing',
    template: 'welcome',
    priority: 50,
    createdAt: welcome.createdAt,
  });
  const [email, sms] = detail!.channels;
  expect(email).toMatchObject({
    channel: 'email',
    status: 'clicked',
    reason: 'https://app.example.com/start',
    to: 'Ada@Example.com',
    templateVersion: 2,
    sentAt: welcome.createdAt + 1000,
    content: {
      subject: `Subject of ${welcome.sendId}`,
      html: `<p>Body of ${welcome.sendId}</p>`,
      text: `Body of ${welcome.sendId}`,
      other: {},
    },
    data: welcome.data,
    bodyExpired: false,
    bodyExpiresAt: welcome.createdAt + 1000 + 30 * DAY,
  });
  expect(email!.history.map((h) => h.status)).toEqual([
    'queued',
    'sent',
    'delivered',
    'opened',
    'clicked',
  ]);
  expect(email!.history[1]).toEqual({
    status: 'sent',
    ts: welcome.createdAt + 1000,
    reason: null,
    provider: 'smtp-1',
    attempt: 1,
  });
  expect(sms).toMatchObject({
    channel: 'sms',
    status: 'suppressed',
    reason: 'no_address:sms',
    to: null,
    content: null,
    data: null,
  });

  const expired = await messageDetail(store, db, old.sendId, TTL);
  expect(expired!.channels[0]).toMatchObject({
    to: 'ada@example.com',
    content: null,
    data: null,
    bodyExpired: true,
    status: 'sent',
  });
  expect(await messageDetail(store, db, 'no-such-send', TTL)).toBeNull();
}

/** The old message's body columns as stored, and its recipient. */
async function storedOld(store: EngineAnalyticsStore, db: string) {
  return store.query<{ recipient: string; html: string; data: string; subject: string }>(
    `SELECT recipient, html, data, subject FROM ${db}.messages WHERE send_id = {s:String}`,
    { s: old.sendId },
  );
}

describe('message log on the ClickHouse server', () => {
  const iso = isolate('msglog');
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase(iso.config());
    await load(db.store, db.database);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('lists, searches and shows messages with their history', async () => {
    await checkLog(db.store, db.database);
  });

  it('empties bodies past the TTL where the server has no column TTL; the metadata and newer bodies stay', async () => {
    expect(await expireMessageBodies(db.store, db.database, 30, NOW)).toBe(2);
    await waitFor(async () => (await pendingMutations(db.store, db.database)).length === 0, {
      timeout: 60_000,
      interval: 200,
      message: 'the body mutation is not done',
    });
    const rows = await storedOld(db.store, db.database);
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows)
      expect(r).toEqual({ recipient: 'ada@example.com', html: '', data: '', subject: '' });
    const [kept] = await db.store.query<{ n: number }>(
      `SELECT count() AS n FROM ${db.database}.messages WHERE html != ''`,
    );
    expect(Number(kept!.n)).toBeGreaterThanOrEqual(MESSAGES.length - 1);
    // Nothing left to empty: no second mutation.
    expect(await expireMessageBodies(db.store, db.database, 30, NOW)).toBe(0);
  });
});

describe('message log on chDB (embedded mode)', () => {
  const database = 'lifecycle_msglog';
  let dir: string;
  let store: EngineAnalyticsStore;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lc-chdb-msglog-'));
    store = await createChdbStore({ path: dir });
    await load(store, database);
  });
  afterAll(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lists, searches and shows messages with their history', async () => {
    await checkLog(store, database);
  });

  it('empties bodies past the TTL by the column TTL on merge; the metadata stays', async () => {
    const [ddl] = await store.query<{ statement: string }>(
      `SHOW CREATE TABLE ${database}.messages`,
    );
    expect(ddl!.statement).toMatch(/`html` String TTL ts \+ toIntervalDay\(30\)/);
    await store.command(`OPTIMIZE TABLE ${database}.messages FINAL`);
    expect(await storedOld(store, database)).toEqual([
      { recipient: 'ada@example.com', html: '', data: '', subject: '' },
    ]);
    const [kept] = await store.query<{ n: number }>(
      `SELECT count() AS n FROM ${database}.messages WHERE html != ''`,
    );
    expect(Number(kept!.n)).toBe(MESSAGES.length - 1);
    // A changed setting changes the table in place.
    await ensureSchema(store, database, { payloadTtlDays: 30, messageBodyTtlDays: 7 });
    const [after] = await store.query<{ statement: string }>(
      `SHOW CREATE TABLE ${database}.messages`,
    );
    expect(after!.statement).toMatch(/`html` String TTL ts \+ toIntervalDay\(7\)/);
    expect(after!.statement.match(/toIntervalDay\(7\)/g)).toHaveLength(5);
  });
});
