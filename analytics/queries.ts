// The questions every lifecycle team asks, as parameterised SQL that runs unchanged on
// ClickHouse 18.16 and on modern engines (chDB): only subqueries, `ANY LEFT JOIN ... USING`,
// `uniqExact` and `-If` combinators, no window functions. Every count is a count of
// distinct ids, so rows a replay wrote twice (not merged yet) never count twice.
import type { AnalyticsStore } from '../platform/analytics-store.ts';
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
  return w.ruleIds && w.ruleIds.length > 0 ? { from: w.from, to: w.to, ruleIds: [...w.ruleIds] } : { from: w.from, to: w.to };
}

const ruleFilter = (w: Window) => (w.ruleIds && w.ruleIds.length > 0 ? ' AND has({ruleIds:Array(String)}, rule_id)' : '');

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
  rates: { sent: number | null; delivered: number | null; opened: number | null; clicked: number | null; converted: number | null };
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
export async function ruleFunnel(store: AnalyticsStore, database: string, w: Window): Promise<FunnelRow[]> {
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

export interface UpliftRow extends ProportionComparison {
  ruleId: string;
}

/**
 * Goal conversion of treated users against the rule's holdout group, per user: a user
 * converted when any of their sends of the rule was followed by the goal within the window.
 * Rules without a goal are left out.
 */
export async function goalUplift(store: AnalyticsStore, database: string, w: Window, confidence = 0.95): Promise<UpliftRow[]> {
  const rows = await store.query<{ rule_id: string; holdout: number; users: number; converters: number }>(upliftSql(database, w), params(w));
  const byRule = new Map<string, { treated: { n: number; x: number }; holdout: { n: number; x: number } }>();
  for (const r of rows) {
    const entry = byRule.get(r.rule_id) ?? { treated: { n: 0, x: 0 }, holdout: { n: 0, x: 0 } };
    entry[Number(r.holdout) === 1 ? 'holdout' : 'treated'] = { n: Number(r.users), x: Number(r.converters) };
    byRule.set(r.rule_id, entry);
  }
  return [...byRule.entries()].map(([ruleId, g]) => ({ ruleId, ...compareProportions(g.treated, g.holdout, confidence) }));
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
  rates: { sent: number | null; failed: number | null; bounced: number | null; complained: number | null };
}

/** Per provider and channel, for outcomes in the window. Bounces arrive without a provider and are credited to the one that sent the message. */
export async function deliverabilityByProvider(store: AnalyticsStore, database: string, w: Window): Promise<DeliverabilityRow[]> {
  const rows = await store.query<Record<'provider' | 'channel', string> & Record<'attempted' | 'sent' | 'failed' | 'bounced' | 'complained', number>>(
    deliverabilitySql(database, w),
    params(w),
  );
  return rows.map((r) => {
    const [attempted, sent, failed, bounced, complained] = [r.attempted, r.sent, r.failed, r.bounced, r.complained].map(Number) as [number, number, number, number, number];
    return {
      provider: r.provider,
      channel: r.channel,
      attempted,
      sent,
      failed,
      bounced,
      complained,
      rates: { sent: rate(sent, attempted), failed: rate(failed, attempted), bounced: rate(bounced, sent), complained: rate(complained, sent) },
    };
  });
}
