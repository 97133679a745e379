// What a chaos run must have produced, checked after it drained, against a clean replay of
// the same events through the engine core (the `simulate` path: in-memory state, virtual
// clock):
// - every event ingest acknowledged and every committed CDC row is on the events topic;
// - the sends topic holds exactly the reference's sendIds, with the reference's content;
// - every expected email arrived exactly once by Message-ID, none unexpected, holdouts got
//   none; marketing email went only to opted-in users, at most the daily cap per user and
//   exactly as many as the cap lets through;
// - ClickHouse holds one row per event, send and delivery outcome on the topics, and no
//   event row of a user deleted in the product database;
// - every user's state in Redis equals the replay's;
// - every poison record is in the DLQ with a reason, from each consumer of its topic.
import { isDeepStrictEqual } from 'node:util';
import type { Redis } from 'ioredis';
import { deliveryCodec, eventCodec, sendCodec } from '../../platform/avro.ts';
import {
  DlqHeaders,
  SCHEMA_ID_HEADER,
  type NormalisedEvent,
  type SendCommand,
  type Topics,
} from '../../platform/contracts.ts';
import type { KafkaBus } from '../../platform/kafka.ts';
import { createKeySpace } from '../../platform/keys.ts';
import { loadRuleSet } from '../../rules/index.ts';
import { createSimulation } from '../../engine/core/simulate.ts';
import { deserializeState, serializeState, type UserState } from '../../engine/core/state.ts';
import { createRedisStateStore } from '../../engine/runtime/redis-state.ts';
import { compareSends, delayedRules, readTopic } from '../support/engine-harness.ts';
import type { WorkloadStats } from './workload.ts';

export interface CheckResult {
  events: number;
  sends: number;
  emailsExpected: number;
  emailsArrived: number;
  lost: number;
  duplicated: number;
  unexpected: number;
  poisonRecords: number;
  poisonDeadLettered: number;
  failures: string[];
  /** Details behind the failures (ids), for the log. */
  details: Record<string, unknown>;
}

export interface CheckInput {
  bus: KafkaBus;
  redis: Redis;
  redisPrefix: string;
  topics: Topics;
  cdcTopic: string;
  rulesDir: string;
  clickhouseUrl: string;
  clickhouseDatabase: string;
  smtpApiUrl: string;
  workload: WorkloadStats;
  poisoned: { key: string; topic: string }[];
  capPerDay: number;
}

/** The consumers of each input topic, each of which must dead-letter a poison record. */
export function consumersOf(topics: Topics, cdcTopic: string): Record<string, number> {
  return {
    // engine, sink; the scheduler's user directory skips what it cannot decode by design
    // (engine/scheduler/scheduler-service.ts) and only counts it.
    [topics.events]: 2,
    [topics.sends]: 2, // delivery, sink
    [topics.deliveries]: 1, // sink
    [cdcTopic]: 1, // the CDC consumer of ingest
  };
}

export const messageIdOf = (sendId: string) =>
  `${sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`;

const sample = (ids: Iterable<string>, n = 10) => [...ids].slice(0, n);

export async function checkRun(i: CheckInput): Promise<CheckResult> {
  const failures: string[] = [];
  const details: Record<string, unknown> = {};
  const fail = (what: string, ids: string[]) => {
    failures.push(`${what}: ${ids.length} (e.g. ${sample(ids, 5).join(', ')})`);
    details[what] = ids;
  };
  const w = i.workload;
  if (w.refused.length > 0) fail('valid events refused by ingest', w.refused);

  // ---- events: the topic against what was acknowledged and committed
  const eventRecords = await readTopic(i.bus.kafka, i.topics.events, 120_000);
  const events: NormalisedEvent[] = [];
  const seen = new Set<string>();
  for (const r of eventRecords) {
    if (!r.value || r.headers[SCHEMA_ID_HEADER] === undefined) continue; // poison
    let e: NormalisedEvent;
    try {
      e = eventCodec.decode(r.value, r.headers[SCHEMA_ID_HEADER]);
    } catch {
      continue;
    }
    if (seen.has(e.id)) continue;
    seen.add(e.id);
    events.push(e);
  }
  const lostEvents = [...w.acknowledged].filter((id) => !seen.has(id));
  if (lostEvents.length > 0)
    fail('acknowledged HTTP events missing from the events topic', lostEvents);
  const cdcUsers = new Set(
    events
      .filter((e) => e.source.startsWith('cdc:') && e.type === 'user_registered')
      .map((e) => e.userId),
  );
  const lostRows = [...w.cdcRows].filter((u) => !cdcUsers.has(u));
  if (lostRows.length > 0) fail('committed CDC rows without a user_registered event', lostRows);
  const deletedOnTopic = new Set(
    events
      .filter((e) => e.source.startsWith('cdc:') && e.type === 'user_deleted')
      .map((e) => e.userId),
  );
  const lostDeletes = [...w.deleted].filter((u) => !deletedOnTopic.has(u));
  if (lostDeletes.length > 0)
    fail('committed CDC deletions without a user_deleted event', lostDeletes);

  // ---- the reference: the same events through the engine core, clock run past every timer
  const loaded = await loadRuleSet(i.rulesDir);
  if (!loaded.ok) throw new Error(`chaos rules: ${JSON.stringify(loaded.errors)}`);
  const ruleSet = loaded.ruleSet;
  const sim = createSimulation({ ruleSet: () => ruleSet });
  // The workload's events only: the engine's own (fired timers) the replay makes itself.
  const inputs = events.filter((e) => e.source.startsWith('http:') || e.source.startsWith('cdc:'));
  const ordered = [...inputs].sort((a, b) => a.ts - b.ts);
  const reference: SendCommand[] = [];
  for (const e of ordered) reference.push(...sim.event(e));
  const lastTs = ordered.at(-1)?.ts ?? Date.now();
  reference.push(...sim.advanceTo(lastTs + 3_600_000));

  // ---- sends on the topic against the reference
  const sendRecords = await readTopic(i.bus.kafka, i.topics.sends, 120_000);
  const sends: SendCommand[] = [];
  for (const r of sendRecords) {
    if (!r.value || r.headers[SCHEMA_ID_HEADER] === undefined) continue;
    try {
      sends.push(sendCodec.decode(r.value, r.headers[SCHEMA_ID_HEADER]));
    } catch {
      // poison
    }
  }
  const diff = compareSends(sends, reference, await delayedRules(i.rulesDir));
  if (diff.missing.length > 0) fail('reference sends never published by the engine', diff.missing);
  if (diff.unexpected.length > 0) fail('sends the reference does not have', diff.unexpected);
  if (diff.differing.length > 0)
    fail(
      'sends whose content differs from the reference',
      diff.differing.map((d) => d.sendId),
    );

  // ---- emails, by Message-ID, per user
  const users = new Map(w.users.map((u) => [u.userId, u]));
  const arrived = new Map<string, number>();
  const arrivedByUser = new Map<string, string[]>();
  for (const u of w.users) {
    const res = await fetch(`${i.smtpApiUrl}/messages?to=${encodeURIComponent(u.email)}`);
    const body = (await res.json()) as { messages: { messageId: string }[] };
    const ids = body.messages.map((m) => m.messageId.replace(/^<|>$/g, ''));
    arrivedByUser.set(u.userId, ids);
    for (const id of ids) arrived.set(id, (arrived.get(id) ?? 0) + 1);
  }
  const byMessageId = new Map(reference.map((s) => [messageIdOf(s.sendId), s]));
  const lost: string[] = [];
  const unexpected: string[] = [];
  const holdoutMail: string[] = [];
  const noConsentMail: string[] = [];
  const overCap: string[] = [];
  let expectedCount = 0;
  for (const [userId, ids] of arrivedByUser) {
    const user = users.get(userId)!;
    // A deleted user's emails may or may not have gone out before delivery learnt of the
    // deletion (a race by design); none may go twice, to a holdout or without consent.
    const erased = w.deleted.has(userId);
    const mine = reference.filter((s) => s.userId === userId && s.channels.includes('email'));
    const marketing: SendCommand[] = [];
    for (const s of mine) {
      const id = messageIdOf(s.sendId);
      if (s.holdout) {
        if (arrived.has(id)) holdoutMail.push(id);
      } else if (s.category === 'transactional') {
        if (erased) continue;
        expectedCount++;
        if (!arrived.has(id)) lost.push(id);
      } else if (!user.optedIn) {
        if (arrived.has(id)) noConsentMail.push(id);
      } else marketing.push(s);
    }
    // The cap decides which marketing emails go out (priority, arrival order); how many is fixed.
    const want = erased ? 0 : Math.min(marketing.length, i.capPerDay);
    expectedCount += want;
    const got = marketing.filter((s) => arrived.has(messageIdOf(s.sendId))).length;
    if (got < want)
      lost.push(
        ...marketing
          .map((s) => `${messageIdOf(s.sendId)} (${got}/${want} marketing emails of ${userId})`)
          .slice(0, want - got),
      );
    if (got > i.capPerDay) overCap.push(`${userId}: ${got}`);
    for (const id of new Set(ids)) if (!byMessageId.has(id)) unexpected.push(id);
  }
  const duplicates = [...arrived].filter(([, n]) => n > 1);
  const duplicated = duplicates.reduce((a, [, n]) => a + n - 1, 0);
  if (lost.length > 0) fail('expected emails that never arrived', lost);
  if (duplicates.length > 0)
    fail(
      'emails that arrived more than once',
      duplicates.map(([id, n]) => `${id} x${n}`),
    );
  if (unexpected.length > 0) fail('emails no reference send explains', unexpected);
  if (holdoutMail.length > 0) fail('emails to holdout users', holdoutMail);
  if (noConsentMail.length > 0) fail('marketing emails to users without opt-in', noConsentMail);
  if (overCap.length > 0) fail('users over the daily email cap', overCap);

  // ---- ClickHouse: one row per event, send and outcome
  // Deleted users' rows are erased when the sink reads the deletion (rows of their sends and
  // outcomes that arrive later stay, by design): they are left out here, and their events
  // must be gone.
  const kept = (userId: string) => !w.deleted.has(userId);
  const outcomeIds = new Set<string>();
  for (const r of await readTopic(i.bus.kafka, i.topics.deliveries, 120_000)) {
    if (!r.value || r.headers[SCHEMA_ID_HEADER] === undefined) continue;
    try {
      const d = deliveryCodec.decode(r.value, r.headers[SCHEMA_ID_HEADER]);
      if (kept(d.userId)) outcomeIds.add(d.id);
    } catch {
      // poison
    }
  }
  const tables: [string, string, Set<string>][] = [
    ['events', 'id', new Set(events.filter((e) => kept(e.userId)).map((e) => e.id))],
    ['sends', 'send_id', new Set(sends.filter((s) => kept(s.userId)).map((s) => s.sendId))],
    ['deliveries', 'id', outcomeIds],
  ];
  // Mutations (the server's erasure) apply in the background: give them a little while. The
  // deletion event's own row stays, stripped, by design (analytics/erasure.ts).
  let erasedRows: string[] = [];
  for (let tries = 0; tries < 30; tries++) {
    const rows = await clickhouseRows(i.clickhouseUrl, i.clickhouseDatabase, 'events', 'id', [
      'type',
    ]);
    erasedRows = rows
      .filter(([, u, type]) => u !== undefined && !kept(u) && type !== 'user_deleted')
      .map(([id, u, type]) => `${u}: ${type} ${id}`);
    if (erasedRows.length === 0) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (erasedRows.length > 0) fail('ClickHouse events: rows of deleted users', erasedRows);
  for (const [table, column, want] of tables) {
    const rows = await clickhouseRows(i.clickhouseUrl, i.clickhouseDatabase, table, column);
    const counts = new Map<string, number>();
    for (const [id, userId] of rows)
      if (id !== undefined && userId !== undefined && kept(userId))
        counts.set(id, (counts.get(id) ?? 0) + 1);
    const missing = [...want].filter((id) => !counts.has(id));
    const extra = [...counts.keys()].filter((id) => !want.has(id));
    const twice = [...counts].filter(([, n]) => n > 1).map(([id, n]) => `${id} x${n}`);
    if (missing.length > 0) fail(`ClickHouse ${table}: ids on the topic without a row`, missing);
    if (extra.length > 0) fail(`ClickHouse ${table}: rows of ids not on the topic`, extra);
    if (twice.length > 0)
      fail(`ClickHouse ${table}: ids with more than one row after FINAL`, twice);
  }

  // ---- per-user state against the replay
  const store = createRedisStateStore(
    { redis: i.redis, keys: createKeySpace(i.redisPrefix) },
    { eventsTopic: i.topics.events },
  );
  const userIds = [...new Set(inputs.map((e) => e.userId))];
  const stored = await store.load(userIds);
  const stateDiffs: string[] = [];
  // The offset fence is the runtime's own. The recent-id window is compared as a set: a
  // delayed trigger's timer fires by the wall clock, so where its id falls among the user's
  // later events depends on when the engine got to them, not on the events.
  const comparable = (s: UserState) => {
    const { applied: _applied, recent, ...rest } = deserializeState(serializeState(s));
    return { ...rest, recent: [...recent].sort((a, b) => a - b) };
  };
  for (const userId of userIds) {
    const want = sim.store.get(userId);
    const got = stored.get(userId)?.state ?? null;
    if (want === undefined || want === null) {
      if (got !== null) stateDiffs.push(`${userId}: has state, the replay has none`);
      continue;
    }
    if (got === null) {
      stateDiffs.push(`${userId}: no state, the replay has one`);
      continue;
    }
    if (!isDeepStrictEqual(comparable(deserializeState(got)), comparable(want))) {
      stateDiffs.push(userId);
      details[`state of ${userId}`] = {
        got: comparable(deserializeState(got)),
        want: comparable(want),
      };
    }
  }
  if (stateDiffs.length > 0) fail('users whose state differs from the replay', stateDiffs);

  // ---- poison records in the DLQ, from every consumer of their topic
  const dlq = await readTopic(i.bus.kafka, i.topics.dlq, 120_000);
  const consumers = consumersOf(i.topics, i.cdcTopic);
  let deadLettered = 0;
  const missingDlq: string[] = [];
  const stages: Record<string, string[]> = {};
  for (const p of i.poisoned) {
    const found = dlq.filter(
      (r) => r.key === p.key && (r.headers[DlqHeaders.reason] ?? '').length > 0,
    );
    const byStage = new Set(found.map((r) => r.headers[DlqHeaders.stage] ?? '?'));
    stages[p.topic] = [...byStage];
    const need = consumers[p.topic] ?? 1;
    if (byStage.size >= need) deadLettered++;
    else
      missingDlq.push(`${p.key} (${byStage.size}/${need} consumers: ${[...byStage].join(', ')})`);
  }
  details.dlqStages = stages;
  if (missingDlq.length > 0)
    fail('poison records not dead-lettered with a reason by every consumer', missingDlq);

  return {
    events: inputs.length,
    sends: reference.length,
    emailsExpected: expectedCount,
    emailsArrived: [...arrived.values()].reduce((a, b) => a + b, 0),
    lost:
      lost.length + lostEvents.length + lostRows.length + lostDeletes.length + diff.missing.length,
    duplicated,
    unexpected: unexpected.length + diff.unexpected.length,
    poisonRecords: i.poisoned.length,
    poisonDeadLettered: deadLettered,
    failures,
    details,
  };
}

/** `[id, user_id, ...more]` of every row of a table, after FINAL collapsed replays. */
async function clickhouseRows(
  url: string,
  database: string,
  table: string,
  column: string,
  more: string[] = [],
): Promise<string[][]> {
  const res = await fetch(`${url}/?database=${encodeURIComponent(database)}`, {
    method: 'POST',
    body: `SELECT ${[column, 'user_id', ...more].join(', ')} FROM ${table} FINAL FORMAT TabSeparated`,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`ClickHouse ${table}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
}
