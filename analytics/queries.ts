// The questions every lifecycle team asks, as parameterised SQL that runs unchanged on
// ClickHouse 18.16 and on modern engines (chDB): only subqueries, `ANY LEFT JOIN ... USING`,
// `uniqExact` and `-If` combinators, no window functions. Every count is a count of
// distinct ids, so rows a replay wrote twice (not merged yet) never count twice.
import type { AnalyticsStore } from './store.ts';
import { assertDatabaseName } from './schema.ts';
import { compareProportions, rate, type ProportionComparison } from './stats.ts';

export interface Window {
  /** Epoch ms, inclusive: sends (funnel, uplift) or outcomes (deliverability) from here. */
  from: number;
  /** Epoch ms, exclusive. */
  to: number;
  /** Only these rules (all when absent or empty). */
  ruleIds?: readonly string[];
}

/** Statuses that mean the message reached the step: later steps imply earlier ones (a click means it was opened). */
export const FUNNEL_STATUSES = {
  sent: ['sent', 'delivered', 'opened', 'clicked', 'read'],
  delivered: ['delivered', 'opened', 'clicked', 'read'],
  opened: ['opened', 'clicked', 'read'],
  clicked: ['clicked'],
} as const;

const list = (values: readonly string[]) => values.map((v) => `'${v}'`).join(', ');

function params(w: Window): Record<string, unknown> {
  if (!Number.isInteger(w.from) || !Number.isInteger(w.to) || w.from < 0 || w.to < w.from) {
    throw new RangeError(`window must be integer epoch ms with from <= to, got ${w.from}..${w.to}`);
  }
  return w.ruleIds && w.ruleIds.length > 0
    ? { from: w.from, to: w.to, ruleIds: [...w.ruleIds] }
    : { from: w.from, to: w.to };
}

const ruleFilter = (w: Window) =>
  w.ruleIds && w.ruleIds.length > 0 ? ' AND has({ruleIds:Array(String)}, rule_id)' : '';

/** One row per send command (replays collapse), treated and holdout, created in the window. */
function sendsSql(db: string, w: Window): string {
  // Filtered under other names first: an alias may not shadow a column the WHERE reads.
  return `SELECT send_id, any(s_rule_id) AS rule_id, any(s_user_id) AS user_id, any(s_holdout) AS holdout,
           any(s_created_at_ms) AS created_at_ms, any(s_goal_event) AS goal_event, any(s_goal_within_ms) AS goal_within_ms
    FROM (
      SELECT send_id, rule_id AS s_rule_id, user_id AS s_user_id, holdout AS s_holdout, created_at_ms AS s_created_at_ms,
             goal_event AS s_goal_event, goal_within_ms AS s_goal_within_ms
      FROM ${db}.sends
      WHERE created_at_ms >= {from:UInt64} AND created_at_ms < {to:UInt64}${ruleFilter(w)}
    )
    GROUP BY send_id`;
}

/**
 * Send ids whose user did the rule's goal event at or after the send was created and
 * within the goal window. Holdout sends are measured the same way: the send command is
 * created for them too, only never delivered.
 */
function conversionsSql(db: string, w: Window): string {
  return `SELECT send_id, 1 AS converted
    FROM (
      SELECT send_id, user_id, goal_event, created_at_ms, goal_within_ms
      FROM (${sendsSql(db, w)})
      WHERE goal_event != ''
    ) AS goal_sends
    ALL INNER JOIN (
      SELECT user_id, type AS goal_event, ts_ms AS goal_ts_ms
      FROM ${db}.events
      WHERE ts_ms >= {from:UInt64}
        AND type IN (SELECT goal_event FROM ${db}.sends WHERE goal_event != '' AND created_at_ms >= {from:UInt64} AND created_at_ms < {to:UInt64})
      GROUP BY user_id, type, ts_ms
    ) AS goals USING (user_id, goal_event)
    WHERE goal_ts_ms >= created_at_ms AND goal_ts_ms <= created_at_ms + goal_within_ms
    GROUP BY send_id`;
}

export function funnelSql(database: string, w: Window): string {
  assertDatabaseName(database);
  const db = database;
  return `SELECT rule_id,
       count() AS sends,
       sum(reached_sent) AS sent,
       sum(reached_delivered) AS delivered,
       sum(reached_opened) AS opened,
       sum(reached_clicked) AS clicked,
       sum(converted) AS converted
FROM (
  SELECT send_id, rule_id, reached_sent, reached_delivered, reached_opened, reached_clicked, converted
  FROM (
    SELECT send_id, rule_id, reached_sent, reached_delivered, reached_opened, reached_clicked
    FROM (${sendsSql(db, w)}) AS s
    ANY LEFT JOIN (
      SELECT send_id,
             max(status IN (${list(FUNNEL_STATUSES.sent)})) AS reached_sent,
             max(status IN (${list(FUNNEL_STATUSES.delivered)})) AS reached_delivered,
             max(status IN (${list(FUNNEL_STATUSES.opened)})) AS reached_opened,
             max(status IN (${list(FUNNEL_STATUSES.clicked)})) AS reached_clicked
      FROM ${db}.deliveries
      WHERE ts_ms >= {from:UInt64}${ruleFilter(w)}
      GROUP BY send_id
    ) AS d USING send_id
    WHERE holdout = 0
  ) AS funnel_steps
  ANY LEFT JOIN (${conversionsSql(db, w)}) AS c USING send_id
)
GROUP BY rule_id
ORDER BY rule_id`;
}

export interface FunnelRow {
  ruleId: string;
  /** Send commands for treated users (holdouts excluded). */
  sends: number;
  sent: number;
  delivered: number;
  opened: number;
  clicked: number;
  /** Treated sends whose user reached the rule's goal within its window. */
  converted: number;
  /** Each step over the send commands (null when there are none). */
  rates: {
    sent: number | null;
    delivered: number | null;
    opened: number | null;
    clicked: number | null;
    converted: number | null;
  };
}

interface FunnelSqlRow {
  rule_id: string;
  sends: number;
  sent: number;
  delivered: number;
  opened: number;
  clicked: number;
  converted: number;
}

/** Per-rule funnel of the treated sends created in the window: sent -> delivered -> opened -> clicked -> goal. */
export async function ruleFunnel(
  store: AnalyticsStore,
  database: string,
  w: Window,
): Promise<FunnelRow[]> {
  const rows = await store.query<FunnelSqlRow>(funnelSql(database, w), params(w));
  return rows.map((r) => {
    const n = (v: unknown) => Number(v);
    const sends = n(r.sends);
    return {
      ruleId: r.rule_id,
      sends,
      sent: n(r.sent),
      delivered: n(r.delivered),
      opened: n(r.opened),
      clicked: n(r.clicked),
      converted: n(r.converted),
      rates: {
        sent: rate(n(r.sent), sends),
        delivered: rate(n(r.delivered), sends),
        opened: rate(n(r.opened), sends),
        clicked: rate(n(r.clicked), sends),
        converted: rate(n(r.converted), sends),
      },
    };
  });
}

export function upliftSql(database: string, w: Window): string {
  assertDatabaseName(database);
  const db = database;
  return `SELECT rule_id, holdout, count() AS users, sum(converted) AS converters
FROM (
  SELECT rule_id, user_id, holdout, max(converted) AS converted
  FROM (
    SELECT send_id, rule_id, user_id, holdout, converted
    FROM (${sendsSql(db, w)}) AS s
    ANY LEFT JOIN (${conversionsSql(db, w)}) AS c USING send_id
    WHERE goal_event != ''
  )
  GROUP BY rule_id, user_id, holdout
)
GROUP BY rule_id, holdout
ORDER BY rule_id, holdout`;
}

interface Arms {
  treated: { n: number; x: number };
  holdout: { n: number; x: number };
}

/**
 * Rows of (rule, holdout flag, users, successes) as each rule's treated and holdout arms,
 * n = users and x = the successes `successes` reads from the row; a missing arm is 0 of 0.
 */
function armsByRule<R extends { rule_id: string; holdout: number; users: number }>(
  rows: readonly R[],
  successes: (row: R) => number,
): Map<string, Arms> {
  const byRule = new Map<string, Arms>();
  for (const r of rows) {
    const entry = byRule.get(r.rule_id) ?? { treated: { n: 0, x: 0 }, holdout: { n: 0, x: 0 } };
    entry[Number(r.holdout) === 1 ? 'holdout' : 'treated'] = {
      n: Number(r.users),
      x: Number(successes(r)),
    };
    byRule.set(r.rule_id, entry);
  }
  return byRule;
}

export interface UpliftRow extends ProportionComparison {
  ruleId: string;
}

/**
 * Goal conversion of treated users against the rule's holdout group, per user: a user
 * converted when any of their sends of the rule was followed by the goal within the window.
 * Rules without a goal are left out.
 */
export async function goalUplift(
  store: AnalyticsStore,
  database: string,
  w: Window,
  confidence = 0.95,
): Promise<UpliftRow[]> {
  const rows = await store.query<{
    rule_id: string;
    holdout: number;
    users: number;
    converters: number;
  }>(upliftSql(database, w), params(w));
  const byRule = armsByRule(rows, (r) => r.converters);
  return [...byRule.entries()].map(([ruleId, g]) => ({
    ruleId,
    ...compareProportions(g.treated, g.holdout, confidence),
  }));
}

export function deliverabilitySql(database: string, w: Window): string {
  assertDatabaseName(database);
  const db = database;
  const filter = `ts_ms >= {from:UInt64} AND ts_ms < {to:UInt64}${ruleFilter(w)}`;
  return `SELECT provider, channel, attempted, sent, failed, bounced, complained
FROM (
  SELECT provider, channel,
         uniqExact(send_id, channel) AS attempted,
         uniqExactIf(send_id, channel, status = 'sent') AS sent,
         uniqExactIf(send_id, channel, status = 'failed') AS failed
  FROM ${db}.deliveries
  WHERE provider != '' AND status IN ('sent', 'failed') AND ${filter}
  GROUP BY provider, channel
) AS attempts
ANY LEFT JOIN (
  SELECT provider, channel, sum(was_bounced) AS bounced, sum(was_complained) AS complained
  FROM (
    SELECT send_id, channel, any(sent_by) AS provider
    FROM (
      SELECT send_id, channel, provider AS sent_by
      FROM ${db}.deliveries
      WHERE provider != '' AND status = 'sent' AND ${filter}
    )
    GROUP BY send_id, channel
  ) AS sent_messages
  ALL INNER JOIN (
    SELECT send_id, channel, max(status = 'bounced') AS was_bounced, max(status = 'complained') AS was_complained
    FROM ${db}.deliveries
    WHERE status IN ('bounced', 'complained') AND ts_ms >= {from:UInt64}
    GROUP BY send_id, channel
  ) AS complaints USING (send_id, channel)
  GROUP BY provider, channel
) AS after_sending USING (provider, channel)
ORDER BY provider, channel`;
}

export interface DeliverabilityRow {
  provider: string;
  channel: string;
  /** Messages (send id x channel) handed to this provider. */
  attempted: number;
  /** Accepted by the provider. */
  sent: number;
  /** Given up on this provider (permanent error or attempts exhausted). */
  failed: number;
  /** Of the sent ones: bounced / complained later. */
  bounced: number;
  complained: number;
  rates: {
    sent: number | null;
    failed: number | null;
    bounced: number | null;
    complained: number | null;
  };
}

/** Per provider and channel, for outcomes in the window. Bounces arrive without a provider and are credited to the one that sent the message. */
export async function deliverabilityByProvider(
  store: AnalyticsStore,
  database: string,
  w: Window,
): Promise<DeliverabilityRow[]> {
  const rows = await store.query<
    Record<'provider' | 'channel', string> &
      Record<'attempted' | 'sent' | 'failed' | 'bounced' | 'complained', number>
  >(deliverabilitySql(database, w), params(w));
  return rows.map((r) => {
    const [attempted, sent, failed, bounced, complained] = [
      r.attempted,
      r.sent,
      r.failed,
      r.bounced,
      r.complained,
    ].map(Number) as [number, number, number, number, number];
    return {
      provider: r.provider,
      channel: r.channel,
      attempted,
      sent,
      failed,
      bounced,
      complained,
      rates: {
        sent: rate(sent, attempted),
        failed: rate(failed, attempted),
        bounced: rate(bounced, sent),
        complained: rate(complained, sent),
      },
    };
  });
}

// ------------------------------------------------------------------ retention and churn

const DAY_MS = 86_400_000;

/**
 * Events that show the user doing something in the product: sent by the app (`http:*`) or
 * read from its database (`cdc:*`). The engine's and scheduler's own events (timers,
 * segment changes) and the tracker's (opens, clicks of our messages) are not activity.
 */
export const ACTIVITY_FILTER = "(source LIKE 'http:%' OR source LIKE 'cdc:%')";

function checkedInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max)
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  return v;
}

export interface RetentionOptions {
  from: number;
  to: number;
  /** Length of a cohort and of a period in days: 1 (daily) or 7 (weeks from Monday, UTC). */
  periodDays: number;
  /** How many periods after the signup period to report (0 = the signup period only). */
  periods: number;
  /** The event that marks a signup; a user's first one counts. */
  signupEvent: string;
}

export const RETENTION_DEFAULTS = {
  periodDays: 7,
  periods: 8,
  signupEvent: 'user_registered',
} as const;

/**
 * Users whose first signup event falls in the window, in cohorts of `periodDays` UTC days
 * (weeks start on Monday: epoch day 0 was a Thursday, hence the +3), and for each period
 * after it how many of them were active. Activity is counted until now, not only within
 * the window. A cohort nobody came back to shows period 0 with 0 active users.
 */
export function retentionSql(database: string): string {
  assertDatabaseName(database);
  const db = database;
  const bucket = (ms: string) => `intDiv(intDiv(${ms}, ${DAY_MS}) + 3, {periodDays:UInt32})`;
  const signups = `SELECT user_id, ${bucket('min(signup_ms)')} AS cohort_bucket
      FROM (SELECT user_id, ts_ms AS signup_ms FROM ${db}.events WHERE type = {signupEvent:String})
      GROUP BY user_id
      HAVING min(signup_ms) >= {from:UInt64} AND min(signup_ms) < {to:UInt64}`;
  return `SELECT toDate(toUInt16(cohort_bucket * {periodDays:UInt32} - 3)) AS cohort, cohort_users, period, active_users,
       active_users / cohort_users AS share
FROM (
  SELECT cohort_bucket, count() AS cohort_users FROM (${signups}) GROUP BY cohort_bucket
) AS sizes
ALL LEFT JOIN (
  SELECT cohort_bucket, period, count() AS active_users
  FROM (
    SELECT user_id, cohort_bucket, active_bucket - cohort_bucket AS period
    FROM (${signups}) AS signed_up
    ALL INNER JOIN (
      SELECT user_id, ${bucket('ts_ms')} AS active_bucket
      FROM ${db}.events
      WHERE ${ACTIVITY_FILTER} AND ts_ms >= {from:UInt64}
      GROUP BY user_id, active_bucket
    ) AS active USING user_id
    WHERE active_bucket >= cohort_bucket AND active_bucket - cohort_bucket <= {periods:UInt32}
  )
  GROUP BY cohort_bucket, period
) AS by_period USING cohort_bucket
ORDER BY cohort, period`;
}

export function retentionParams(o: RetentionOptions): Record<string, unknown> {
  const w = params(o);
  if (o.periodDays !== 1 && o.periodDays !== 7)
    throw new RangeError(`periodDays must be 1 or 7, got ${o.periodDays}`);
  return {
    ...w,
    periodDays: o.periodDays,
    periods: checkedInt('periods', o.periods, 0, 366),
    signupEvent: o.signupEvent,
  };
}

export interface RetentionRow {
  /** First day of the cohort (YYYY-MM-DD, UTC). */
  cohort: string;
  cohortUsers: number;
  /** Periods after the signup period (0: the signup period itself). */
  period: number;
  activeUsers: number;
  share: number;
}

/** Retention cohorts: users by signup day or week, and the share active in each following period. */
export async function retentionCohorts(
  store: AnalyticsStore,
  database: string,
  o: RetentionOptions,
): Promise<RetentionRow[]> {
  const rows = await store.query<{
    cohort: string;
    cohort_users: number;
    period: number;
    active_users: number;
    share: number;
  }>(retentionSql(database), retentionParams(o));
  return rows.map((r) => ({
    cohort: r.cohort,
    cohortUsers: Number(r.cohort_users),
    period: Number(r.period),
    activeUsers: Number(r.active_users),
    share: Number(r.share),
  }));
}

export interface ChurnOptions {
  from: number;
  /** Inactivity is judged as of this instant (exclusive). */
  to: number;
  /** A user is inactive when their last activity is this many days or more before `to`. */
  inactiveDays: number;
  /** The event that marks a cancellation (counted within the window). */
  cancelEvent: string;
}

export const CHURN_DEFAULTS = { inactiveDays: 30, cancelEvent: 'subscription_cancelled' } as const;

/**
 * As of `to`: users ever active before it, how many of them have been inactive for
 * `inactiveDays` or more, and how many did the cancellation event in the window.
 */
export function churnSql(database: string): string {
  assertDatabaseName(database);
  const db = database;
  return `SELECT count() AS users,
       sum(last_active_ms < {inactiveBefore:UInt64}) AS inactive,
       sum(cancelled) AS cancelled
FROM (
  SELECT user_id, max(active_at_ms) AS last_active_ms, max(is_cancel) AS cancelled
  FROM (
    SELECT user_id,
           if(${ACTIVITY_FILTER}, ts_ms, 0) AS active_at_ms,
           (type = {cancelEvent:String} AND ts_ms >= {from:UInt64}) AS is_cancel
    FROM ${db}.events
    WHERE ts_ms < {to:UInt64} AND (${ACTIVITY_FILTER} OR type = {cancelEvent:String})
  )
  GROUP BY user_id
  HAVING last_active_ms > 0
)`;
}

export function churnParams(o: ChurnOptions): Record<string, unknown> {
  const w = params(o);
  const days = checkedInt('inactiveDays', o.inactiveDays, 1, 3650);
  return { ...w, inactiveBefore: Math.max(0, o.to - days * DAY_MS), cancelEvent: o.cancelEvent };
}

export interface ChurnRow {
  /** Users with any activity before `to`. */
  users: number;
  /** Of them, users whose last activity was `inactiveDays` or more before `to`. */
  inactive: number;
  active: number;
  inactiveShare: number | null;
  /** Users (active at some point) who did the cancellation event in the window. */
  cancelled: number;
}

/** Churn as of the window's end: users inactive N days, and cancellations within the window. */
export async function churnSummary(
  store: AnalyticsStore,
  database: string,
  o: ChurnOptions,
): Promise<ChurnRow> {
  const [r] = await store.query<{ users: number; inactive: number; cancelled: number }>(
    churnSql(database),
    churnParams(o),
  );
  const users = Number(r?.users ?? 0);
  const inactive = Number(r?.inactive ?? 0);
  return {
    users,
    inactive,
    active: users - inactive,
    inactiveShare: rate(inactive, users),
    cancelled: Number(r?.cancelled ?? 0),
  };
}

export interface ReengagementOptions extends Window {
  /** A send is to a churn-risk user when the user had no activity in this many days before it. */
  inactiveDays: number;
  /** The user came back when active within this many days after the send. */
  returnWithinDays: number;
}

export const REENGAGEMENT_DEFAULTS = { inactiveDays: 14, returnWithinDays: 14 } as const;

/**
 * Per rule and group (treated / holdout), users a send of the rule (created in the window)
 * reached while at churn risk, and how many of them came back. Per user, like the uplift:
 * a user with several at-risk sends counts once and came back if any of them was followed
 * by activity. Holdout users are measured from their unsent send command, same clock.
 */
export function reengagementSql(database: string, w: Window): string {
  assertDatabaseName(database);
  const db = database;
  return `SELECT rule_id, holdout, count() AS users, sum(came_back) AS returned
FROM (
  SELECT rule_id, user_id, holdout, max(came_back) AS came_back
  FROM (
    SELECT send_id, rule_id, user_id, holdout, created_at_ms, last_active_ms, came_back
    FROM (${sendsSql(db, w)}) AS s
    ANY LEFT JOIN (
      SELECT send_id,
             maxIf(active_at_ms, active_at_ms <= sent_at_ms) AS last_active_ms,
             max(active_at_ms > sent_at_ms AND active_at_ms <= sent_at_ms + {returnWithinMs:UInt64}) AS came_back
      FROM (SELECT send_id, user_id, created_at_ms AS sent_at_ms FROM (${sendsSql(db, w)})) AS risk_sends
      ALL INNER JOIN (
        SELECT user_id, ts_ms AS active_at_ms
        FROM ${db}.events
        WHERE ${ACTIVITY_FILTER} AND ts_ms >= {activeFrom:UInt64}
        GROUP BY user_id, ts_ms
      ) AS activity USING user_id
      GROUP BY send_id
    ) AS a USING send_id
    WHERE created_at_ms - last_active_ms >= {inactiveMs:UInt64}
  )
  GROUP BY rule_id, user_id, holdout
)
GROUP BY rule_id, holdout
ORDER BY rule_id, holdout`;
}

export function reengagementParams(o: ReengagementOptions): Record<string, unknown> {
  const w = params(o);
  const inactiveMs = checkedInt('inactiveDays', o.inactiveDays, 1, 3650) * DAY_MS;
  // Activity older than (window start - inactivity) cannot change whether a send in the window was at risk.
  return {
    ...w,
    inactiveMs,
    activeFrom: Math.max(0, o.from - inactiveMs),
    returnWithinMs: checkedInt('returnWithinDays', o.returnWithinDays, 1, 3650) * DAY_MS,
  };
}

export interface ReengagementRow extends ProportionComparison {
  ruleId: string;
  /** Estimated churn-risk users the rule brought back: uplift × treated at-risk users (null without a holdout). */
  saved: number | null;
  /** The interval of `saved` at the comparison's confidence. */
  savedCi: { low: number; high: number } | null;
}

/**
 * What re-engagement rules saved: per rule, churn-risk users it sent to who came back,
 * against its holdout (n = at-risk users, x = came back). Rules without a holdout get the
 * treated numbers and no estimate.
 */
export async function reengagement(
  store: AnalyticsStore,
  database: string,
  o: ReengagementOptions,
  confidence = 0.95,
): Promise<ReengagementRow[]> {
  const rows = await store.query<{
    rule_id: string;
    holdout: number;
    users: number;
    returned: number;
  }>(reengagementSql(database, o), reengagementParams(o));
  const byRule = armsByRule(rows, (r) => r.returned);
  return [...byRule.entries()].map(([ruleId, g]) => {
    const c = compareProportions(g.treated, g.holdout, confidence);
    const n = g.treated.n;
    return {
      ruleId,
      ...c,
      saved: c.uplift === null ? null : c.uplift * n,
      savedCi: c.ci ? { low: c.ci.low * n, high: c.ci.high * n } : null,
    };
  });
}

/** What became of a campaign's sends, per send (a send on two channels counts once, as its best outcome). */
export interface CampaignOutcomes {
  /** Send commands the engine made for the campaign (audience members its rule matched), holdouts included. */
  matched: number;
  /** Of those, holdout sends: recorded, never sent. */
  holdout: number;
  /** Accepted by a provider on at least one channel. */
  sent: number;
  /** Stopped by the policy chain (consent, suppression, caps, expiry) on every channel tried. */
  suppressed: number;
  /** Failed (attempts exhausted, permanent error, bounce) without being sent anywhere. */
  failed: number;
}

export function campaignSendsSql(database: string): string {
  assertDatabaseName(database);
  return `SELECT uniqExact(send_id) AS matched, uniqExactIf(send_id, holdout = 1) AS holdout
FROM ${database}.sends
WHERE campaign_id = {campaignId:String}`;
}

export function campaignDeliveriesSql(database: string): string {
  assertDatabaseName(database);
  return `SELECT uniqExactIf(send_id, was_sent = 1) AS sent,
       uniqExactIf(send_id, was_sent = 0 AND was_suppressed = 1 AND was_failed = 0) AS suppressed,
       uniqExactIf(send_id, was_sent = 0 AND was_failed = 1) AS failed
FROM (
  SELECT send_id,
         max(status IN (${list(FUNNEL_STATUSES.sent)})) AS was_sent,
         max(status = 'suppressed') AS was_suppressed,
         max(status IN ('failed', 'bounced')) AS was_failed
  FROM ${database}.deliveries
  WHERE rule_id = {ruleId:String}
  GROUP BY send_id
)`;
}

/**
 * A campaign's outcomes from analytics: its sends by `campaign_id`, their delivery outcomes
 * by the campaign's rule id. As fresh as the sink's last flush (about a second behind delivery).
 */
export async function campaignOutcomes(
  store: AnalyticsStore,
  database: string,
  campaign: { campaignId: string; ruleId: string },
): Promise<CampaignOutcomes> {
  const num = (v: unknown) => Number(v ?? 0);
  const [sends] = await store.query<{ matched: unknown; holdout: unknown }>(
    campaignSendsSql(database),
    { campaignId: campaign.campaignId },
  );
  const [outcomes] = await store.query<{ sent: unknown; suppressed: unknown; failed: unknown }>(
    campaignDeliveriesSql(database),
    { ruleId: campaign.ruleId },
  );
  return {
    matched: num(sends?.matched),
    holdout: num(sends?.holdout),
    sent: num(outcomes?.sent),
    suppressed: num(outcomes?.suppressed),
    failed: num(outcomes?.failed),
  };
}
