// The named queries a panel can ask for (`"query": "funnel"`): the analytics room's
// functions, which add what SQL alone cannot give on every engine (confidence intervals,
// p-values), flattened into rows of plain columns for the page.
import type { AnalyticsStore } from '../analytics/store.ts';
import {
  churnSummary,
  CHURN_DEFAULTS,
  deliverabilityByProvider,
  goalUplift,
  reengagement,
  REENGAGEMENT_DEFAULTS,
  retentionCohorts,
  RETENTION_DEFAULTS,
  ruleFunnel,
} from '../analytics/index.ts';
import type { ProportionComparison } from '../analytics/index.ts';
import type { ParameterSpec } from './schema.ts';

export type ParamValue = number | string;

/** Values every panel gets: the window and the rule filter. */
export interface PanelContext {
  from: number;
  to: number;
  /** Empty: every rule. */
  ruleIds: string[];
  /** The dashboard's and the panel's parameters, validated. */
  values: Record<string, ParamValue>;
}

export interface BuiltinQuery {
  description: string;
  /** Parameters it reads beyond the window and rules, with defaults. */
  params: Record<string, ParameterSpec>;
  /** Column names, in order, and what each one means. */
  columns: Record<string, string>;
  run(
    store: AnalyticsStore,
    database: string,
    ctx: PanelContext,
  ): Promise<Record<string, unknown>[]>;
}

const confidence: ParameterSpec = {
  type: 'integer',
  label: 'Confidence (%)',
  default: 95,
  minimum: 50,
  maximum: 99,
};
const eventName = (d: string): ParameterSpec => ({ type: 'string', default: d, maxLength: 200 });
const int = (v: ParamValue | undefined) => Number(v);
const str = (v: ParamValue | undefined) => String(v);

function window(ctx: PanelContext) {
  return ctx.ruleIds.length > 0
    ? { from: ctx.from, to: ctx.to, ruleIds: ctx.ruleIds }
    : { from: ctx.from, to: ctx.to };
}

function comparisonColumns(c: ProportionComparison, prefix: { n: string; x: string }) {
  return {
    [`treated_${prefix.n}`]: c.treated.n,
    [`treated_${prefix.x}`]: c.treated.x,
    treated_rate: c.treated.rate,
    [`holdout_${prefix.n}`]: c.holdout.n,
    [`holdout_${prefix.x}`]: c.holdout.x,
    holdout_rate: c.holdout.rate,
    uplift: c.uplift,
    ci_low: c.ci?.low ?? null,
    ci_high: c.ci?.high ?? null,
    p_value: c.pValue,
  };
}

const comparisonDocs = (what: string, n: string, x: string) => ({
  [`treated_${n}`]: `treated ${what}`,
  [`treated_${x}`]: `of them, ${x.replace('_', ' ')}`,
  treated_rate: `treated_${x} / treated_${n}`,
  [`holdout_${n}`]: `holdout ${what}`,
  [`holdout_${x}`]: `of them, ${x.replace('_', ' ')}`,
  holdout_rate: `holdout_${x} / holdout_${n}`,
  uplift: 'treated_rate - holdout_rate (null without a holdout)',
  ci_low: 'lower end of the confidence interval of the uplift',
  ci_high: 'upper end',
  p_value: 'two-sided p-value of "no difference"',
});

export const BUILTIN_QUERIES: Record<string, BuiltinQuery> = {
  funnel: {
    description:
      'Per rule: treated send commands created in the window and how many were sent, delivered, opened, clicked and followed by the goal.',
    params: {},
    columns: {
      rule_id: 'rule',
      sends: 'treated send commands (holdouts excluded)',
      sent: 'sent (or any later step)',
      delivered: 'delivered, opened, clicked or read',
      opened: 'opened, clicked or read',
      clicked: 'clicked',
      converted: 'goal event within the goal window after the send',
      conversion_rate: 'converted / sends',
    },
    async run(store, db, ctx) {
      return (await ruleFunnel(store, db, window(ctx))).map((r) => ({
        rule_id: r.ruleId,
        sends: r.sends,
        sent: r.sent,
        delivered: r.delivered,
        opened: r.opened,
        clicked: r.clicked,
        converted: r.converted,
        conversion_rate: r.rates.converted,
      }));
    },
  },
  uplift: {
    description:
      'Per rule with a goal: goal conversion of treated users against the holdout group, the uplift and its confidence interval.',
    params: { confidencePercent: confidence },
    columns: { rule_id: 'rule', ...comparisonDocs('users', 'users', 'converted') },
    async run(store, db, ctx) {
      const rows = await goalUplift(
        store,
        db,
        window(ctx),
        int(ctx.values.confidencePercent) / 100,
      );
      return rows.map((r) => ({
        rule_id: r.ruleId,
        ...comparisonColumns(r, { n: 'users', x: 'converted' }),
      }));
    },
  },
  deliverability: {
    description:
      'Per provider and channel, outcomes in the window: attempted, sent, failed, and of the sent ones bounced and complained.',
    params: {},
    columns: {
      provider: 'provider',
      channel: 'channel',
      attempted: 'messages handed to the provider',
      sent: 'accepted',
      failed: 'given up on this provider',
      bounced: 'of the sent ones, bounced later',
      complained: 'of the sent ones, marked as spam',
      sent_rate: 'sent / attempted',
      bounce_rate: 'bounced / sent',
      complaint_rate: 'complained / sent',
    },
    async run(store, db, ctx) {
      return (await deliverabilityByProvider(store, db, window(ctx))).map((r) => ({
        provider: r.provider,
        channel: r.channel,
        attempted: r.attempted,
        sent: r.sent,
        failed: r.failed,
        bounced: r.bounced,
        complained: r.complained,
        sent_rate: r.rates.sent,
        bounce_rate: r.rates.bounced,
        complaint_rate: r.rates.complained,
      }));
    },
  },
  retention: {
    description:
      'Users whose first signup event is in the window, by signup day or week (UTC, weeks from Monday), and how many were active in each following period.',
    params: {
      period: { type: 'string', label: 'Cohort period', default: 'week', enum: ['day', 'week'] },
      periods: {
        type: 'integer',
        label: 'Periods shown',
        default: RETENTION_DEFAULTS.periods,
        minimum: 0,
        maximum: 366,
      },
      signupEvent: eventName(RETENTION_DEFAULTS.signupEvent),
    },
    columns: {
      cohort: 'first day of the cohort (UTC)',
      cohort_users: 'users who signed up in it',
      period: 'periods after the signup period (0: the signup period)',
      active_users: 'of them, active in that period',
      share: 'active_users / cohort_users',
    },
    async run(store, db, ctx) {
      const rows = await retentionCohorts(store, db, {
        from: ctx.from,
        to: ctx.to,
        periodDays: str(ctx.values.period) === 'day' ? 1 : 7,
        periods: int(ctx.values.periods),
        signupEvent: str(ctx.values.signupEvent),
      });
      return rows.map((r) => ({
        cohort: r.cohort,
        cohort_users: r.cohortUsers,
        period: r.period,
        active_users: r.activeUsers,
        share: r.share,
      }));
    },
  },
  churn: {
    description:
      'As of the end of the window: users ever active, how many have been inactive for inactiveDays or more, and cancellations in the window.',
    params: {
      inactiveDays: {
        type: 'integer',
        label: 'Inactive after (days)',
        default: CHURN_DEFAULTS.inactiveDays,
        minimum: 1,
        maximum: 3650,
      },
      cancelEvent: eventName(CHURN_DEFAULTS.cancelEvent),
    },
    columns: {
      users: 'users with any activity before the end of the window',
      active: 'active within inactiveDays before the end',
      inactive: 'inactive for inactiveDays or more',
      inactive_share: 'inactive / users',
      cancelled: 'users who did the cancellation event in the window',
    },
    async run(store, db, ctx) {
      const r = await churnSummary(store, db, {
        from: ctx.from,
        to: ctx.to,
        inactiveDays: int(ctx.values.inactiveDays),
        cancelEvent: str(ctx.values.cancelEvent),
      });
      return [
        {
          users: r.users,
          active: r.active,
          inactive: r.inactive,
          inactive_share: r.inactiveShare,
          cancelled: r.cancelled,
        },
      ];
    },
  },
  reengagement: {
    description:
      'What re-engagement rules saved: per rule, users a send (created in the window) reached while inactive for inactiveDays, and how many came back within returnWithinDays, treated against holdout; saved = uplift × treated users at risk.',
    params: {
      inactiveDays: {
        type: 'integer',
        label: 'At risk after (days inactive)',
        default: REENGAGEMENT_DEFAULTS.inactiveDays,
        minimum: 1,
        maximum: 3650,
      },
      returnWithinDays: {
        type: 'integer',
        label: 'Came back within (days)',
        default: REENGAGEMENT_DEFAULTS.returnWithinDays,
        minimum: 1,
        maximum: 3650,
      },
      confidencePercent: confidence,
    },
    columns: {
      rule_id: 'rule',
      ...comparisonDocs('users at churn risk', 'at_risk', 'came_back'),
      saved: 'estimated users brought back: uplift × treated_at_risk',
      saved_low: 'lower end of its interval',
      saved_high: 'upper end',
    },
    async run(store, db, ctx) {
      const rows = await reengagement(
        store,
        db,
        {
          ...window(ctx),
          inactiveDays: int(ctx.values.inactiveDays),
          returnWithinDays: int(ctx.values.returnWithinDays),
        },
        int(ctx.values.confidencePercent) / 100,
      );
      return rows.map((r) => ({
        rule_id: r.ruleId,
        ...comparisonColumns(r, { n: 'at_risk', x: 'came_back' }),
        saved: r.saved,
        saved_low: r.savedCi?.low ?? null,
        saved_high: r.savedCi?.high ?? null,
      }));
    },
  },
};
