// `lifecycle backtest --rule ID --from ISO --to ISO`: replays the event history kept in
// ClickHouse through the engine core (the same one `simulate`, the demo and the engine run:
// in-memory state, a virtual clock following event time, timers and schedules firing as it
// passes them) and reports who the rule would have sent what in the window.
//
// History before `--from` is replayed too, so the state the rule sees at `--from` (traits,
// event counts, segment memberships, what it already sent under oncePerUser/cooldown) is
// the state it would have had; only its sends created in [from, to) are reported. Events the
// engine itself produced (timer.fired, segment entries/exits, schedule occurrences) are not
// read back: the replay makes its own. The rule is evaluated as enabled even when its file
// says `enabled: false`, so a draft can be tried before it goes live. Because sendIds are
// deterministic, the report also compares with what the live rule actually sent (the
// `sends` table) in the same window.
import type { WriteStream } from 'node:fs';
import type { NormalisedEvent, SendCommand } from '../platform/contracts.ts';
import type { AnalyticsStore } from './store.ts';
import { errorMessage } from '../platform/errors.ts';
import { closeOutputFile, openOutputFile } from '../platform/output-file.ts';
import { loadRuleSet, formatRuleError, type RuleSet } from '../rules/index.ts';
import { createSimulation, toOutputRecord } from '../engine/core/simulate.ts';
import { INTERNAL_EVENT_TYPES } from '../engine/core/engine-core.ts';
import { assertDatabaseName } from './schema.ts';

export interface BacktestOptions {
  rule: string;
  from: string;
  to: string;
  /** Rules folder (the rule and every segment it may need). */
  rules: string;
  /** Where to write the would-be send commands as JSON lines ("-": stdout); none: summary only. */
  out?: string;
  quiet?: boolean;
  /** Events read per query (keyset pages ordered by time, id). */
  pageSize?: number;
}

export interface BacktestIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export interface BacktestReport {
  rule: string;
  from: string;
  to: string;
  /** Events read from the store and applied (duplicates of one id counted once). */
  eventsReplayed: number;
  eventsInWindow: number;
  users: number;
  /** The rule's would-be sends created in [from, to). */
  sends: number;
  holdouts: number;
  recipients: number;
  byVariant: Record<string, number>;
  byTemplate: Record<string, number>;
  /** The live rule's sends in the same window (by sendId), and the overlap. */
  live: { sends: number; both: number; onlyBacktest: number; onlyLive: number };
}

const PROGRESS_EVERY = 50_000;

interface EventRowOut {
  id: string;
  user_id: string;
  anonymous_id: string;
  type: string;
  ts_ms: string | number;
  received_at_ms: string | number;
  source: string;
  properties: string;
  traits: string;
  context: string;
}

const parseJson = (text: string): Record<string, unknown> | undefined =>
  text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);

function toEvent(r: EventRowOut): NormalisedEvent {
  const traits = parseJson(r.traits);
  const context = parseJson(r.context);
  return {
    id: r.id,
    userId: r.user_id,
    ...(r.anonymous_id ? { anonymousId: r.anonymous_id } : {}),
    type: r.type,
    ts: Number(r.ts_ms),
    receivedAt: Number(r.received_at_ms),
    source: r.source,
    properties: parseJson(r.properties) ?? {},
    ...(traits ? { traits } : {}),
    ...(context ? { context } : {}),
  };
}

/** The SQL of one page of history: events up to `to`, after the (ts, id) key of the last page. */
export function historyPageSql(database: string): string {
  assertDatabaseName(database);
  return `SELECT id, user_id, anonymous_id, type, ts_ms, received_at_ms, source, properties, traits, context
FROM ${database}.events
WHERE ts_ms < {to:UInt64}
  AND (ts_ms > {afterTs:UInt64} OR (ts_ms = {afterTs:UInt64} AND id > {afterId:String}))
  AND NOT has({internal:Array(String)}, type)
ORDER BY ts_ms, id
LIMIT {limit:UInt64}`;
}

export interface ReplayOptions {
  /** The set to replay (the rule and every segment it may need), the rule enabled in it. */
  ruleSet: RuleSet;
  rule: string;
  /** The window, epoch ms: [from, to). */
  from: number;
  to: number;
  /** Events read per query (keyset pages ordered by time, id). */
  pageSize?: number;
  /** Progress lines and skipped events, for a person watching. */
  progress?: (text: string) => void;
}

export type ReplayResult =
  { ok: true; report: BacktestReport; sends: SendCommand[] } | { ok: false; message: string };

/**
 * The backtest itself, for the CLI and the staff API alike: replays the history up to `to`
 * through the simulation with `ruleSet` and keeps the rule's sends created in the window,
 * then compares them with the live rule's sends by sendId.
 */
export async function replayRule(
  opts: ReplayOptions,
  deps: { store: AnalyticsStore; database: string },
): Promise<ReplayResult> {
  const { from, to, ruleSet } = opts;
  const progress = opts.progress ?? (() => {});
  const sim = createSimulation({ ruleSet: () => ruleSet });
  const found: SendCommand[] = [];
  // Ids of the window's events, to count each once however often it is stored.
  const inWindow = new Set<string>();
  const keep = (sends: SendCommand[]) => {
    for (const s of sends)
      if (s.ruleId === opts.rule && s.createdAt >= from && s.createdAt < to) found.push(s);
  };
  const pageSize = opts.pageSize ?? 20_000;
  const sql = historyPageSql(deps.database);
  const internal = [...INTERNAL_EVENT_TYPES];
  let afterTs = 0;
  let afterId = '';
  let read = 0;
  let nextProgress = PROGRESS_EVERY;
  const started = Date.now();
  for (;;) {
    let rows: EventRowOut[];
    try {
      rows = await deps.store.query<EventRowOut>(sql, {
        to,
        afterTs,
        afterId,
        internal,
        limit: pageSize,
      });
    } catch (err) {
      return {
        ok: false,
        message: `reading the event history from ClickHouse database ${deps.database} failed: ${errorMessage(err)}`,
      };
    }
    for (const r of rows) {
      let event: NormalisedEvent;
      try {
        event = toEvent(r);
      } catch (err) {
        progress(`backtest: skipping event ${r.id}: unreadable stored JSON (${errorMessage(err)})`);
        continue;
      }
      if (event.ts >= from) inWindow.add(event.id);
      keep(sim.event(event));
    }
    read += rows.length;
    if (read >= nextProgress) {
      nextProgress += PROGRESS_EVERY;
      const rate = Math.round(read / Math.max(0.001, (Date.now() - started) / 1000));
      progress(
        `backtest: ${read.toLocaleString('en')} events replayed (up to ${new Date(afterTs).toISOString()}), ${found.length} sends in the window, ${rate.toLocaleString('en')} events/s`,
      );
    }
    if (rows.length < pageSize) break;
    const last = rows[rows.length - 1]!;
    afterTs = Number(last.ts_ms);
    afterId = last.id;
  }
  // Timers and schedule occurrences due before the end of the window.
  keep(sim.advanceTo(to - 1));

  let liveIds: Set<string>;
  try {
    // The database name was checked by historyPageSql.
    const live = await deps.store.query<{ send_id: string }>(
      `SELECT send_id FROM ${deps.database}.sends WHERE rule_id = {rule:String} AND created_at_ms >= {from:UInt64} AND created_at_ms < {to:UInt64} GROUP BY send_id`,
      { rule: opts.rule, from, to },
    );
    liveIds = new Set(live.map((r) => r.send_id));
  } catch (err) {
    return {
      ok: false,
      message: `reading the live sends from ClickHouse database ${deps.database} failed: ${errorMessage(err)}`,
    };
  }
  const ids = new Set(found.map((s) => s.sendId));
  const both = [...ids].filter((id) => liveIds.has(id)).length;
  const count = (key: (s: SendCommand) => string) =>
    found.reduce<Record<string, number>>(
      (acc, s) => ((acc[key(s)] = (acc[key(s)] ?? 0) + 1), acc),
      {},
    );
  const summary = sim.summary();
  const report: BacktestReport = {
    rule: opts.rule,
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    eventsReplayed: summary.events,
    eventsInWindow: inWindow.size,
    users: summary.users,
    sends: found.length,
    holdouts: found.filter((s) => s.holdout).length,
    recipients: new Set(found.filter((s) => !s.holdout).map((s) => s.userId)).size,
    byVariant: count((s) => (s.holdout ? '(holdout)' : (s.variant ?? '(none)'))),
    byTemplate: count((s) => `${s.template} via ${s.channels.join('+')}`),
    live: {
      sends: liveIds.size,
      both,
      onlyBacktest: ids.size - both,
      onlyLive: liveIds.size - both,
    },
  };
  return { ok: true, report, sends: found };
}

export async function backtest(
  opts: BacktestOptions,
  deps: { store: AnalyticsStore; database: string },
  io: BacktestIo,
): Promise<{ exitCode: number; report: BacktestReport | null }> {
  const fail = (text: string) => {
    io.stderr.write(`${text}\n`);
    return { exitCode: 1, report: null };
  };
  const from = Date.parse(opts.from);
  if (!Number.isFinite(from))
    return fail(
      `--from: ${JSON.stringify(opts.from)} is not an ISO date (e.g. 2026-03-01T00:00:00Z)`,
    );
  const to = Date.parse(opts.to);
  if (!Number.isFinite(to))
    return fail(`--to: ${JSON.stringify(opts.to)} is not an ISO date (e.g. 2026-03-08T00:00:00Z)`);
  if (to <= from) return fail(`--to (${opts.to}) must be after --from (${opts.from})`);

  const asWritten = await loadRuleSet(opts.rules);
  if (!asWritten.ok) return fail(asWritten.errors.map(formatRuleError).join('\n'));
  const written = asWritten.ruleSet.rules.find((r) => r.def.id === opts.rule);
  if (!written)
    return fail(
      `--rule: no rule "${opts.rule}" in ${opts.rules} (rules there: ${asWritten.ruleSet.rules.map((r) => r.def.id).join(', ') || 'none'})`,
    );
  const draft = written.def.enabled === false;
  let ruleSet = asWritten.ruleSet;
  if (draft) {
    const enabled = await loadRuleSet(opts.rules, { enable: [opts.rule] });
    if (!enabled.ok) return fail(enabled.errors.map(formatRuleError).join('\n'));
    ruleSet = enabled.ruleSet;
  }

  const toStdout = opts.out === '-';
  let out: NodeJS.WritableStream | null = null;
  if (opts.out !== undefined && !toStdout) {
    const file = await openOutputFile(opts.out);
    if (file instanceof Error) return fail(`--out: cannot write ${opts.out}: ${file.message}`);
    out = file;
  } else if (toStdout) out = io.stdout;
  const report = (text: string) =>
    void (opts.quiet ? undefined : (toStdout ? io.stderr : io.stdout).write(`${text}\n`));
  const progress = (text: string) => void (opts.quiet ? undefined : io.stderr.write(`${text}\n`));

  let result: ReplayResult;
  try {
    result = await replayRule(
      {
        ruleSet,
        rule: opts.rule,
        from,
        to,
        progress,
        ...(opts.pageSize !== undefined ? { pageSize: opts.pageSize } : {}),
      },
      deps,
    );
    if (result.ok && out) {
      let chunk = '';
      for (const s of result.sends) chunk += `${JSON.stringify(toOutputRecord(s))}\n`;
      if (chunk && !out.write(chunk))
        await new Promise<void>((resolve) => out!.once('drain', resolve));
    }
  } finally {
    if (out && !toStdout) await closeOutputFile(out as WriteStream);
  }
  if (!result.ok) return fail(result.message);
  report(formatBacktest(result.report, draft));
  if (out && !toStdout) report(`send commands written to ${opts.out}`);
  return { exitCode: 0, report: result.report };
}

export function formatBacktest(r: BacktestReport, draft: boolean): string {
  const n = (x: number) => x.toLocaleString('en');
  const lines = [
    `backtest of rule ${r.rule}${draft ? ' (disabled in its file: evaluated as if enabled)' : ''}, ${r.from} -> ${r.to}`,
    `events replayed: ${n(r.eventsReplayed)} (${n(r.eventsInWindow)} in the window), users: ${n(r.users)}`,
    `would send: ${n(r.sends - r.holdouts)} to ${n(r.recipients)} users, plus ${n(r.holdouts)} holdout`,
  ];
  for (const [k, v] of Object.entries(r.byTemplate).sort()) lines.push(`  ${k}: ${n(v)}`);
  const variants = Object.entries(r.byVariant).sort();
  if (variants.length > 1 || variants[0]?.[0] !== '(none)')
    lines.push(`  by variant: ${variants.map(([k, v]) => `${k} ${n(v)}`).join(', ')}`);
  lines.push(
    `live sends of the rule in the window: ${n(r.live.sends)}; same sendId in both: ${n(r.live.both)}, only in the backtest: ${n(r.live.onlyBacktest)}, only live: ${n(r.live.onlyLive)}`,
  );
  return lines.join('\n');
}
