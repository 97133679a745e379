// A campaign compiles to a rule the engine evaluates like any other: trigger = the reserved
// `campaign.member` event of its runs, conditions = its audience over the user's state
// (segment membership or a saved filter, in the rules' condition language), action = the
// send with its variants, holdout and goal. Consent, caps, quiet hours, holdouts and analytics
// then apply unchanged. The engine's rule set is the rule files plus the rules of the live
// campaigns; a stopped campaign's rule leaves the set, so its remaining members match nothing.
import type { Logger } from 'pino';
import type { MessageTypes } from '../../platform/message-types.ts';
import {
  cronProblem,
  extendRuleSet,
  isValidTimezone,
  type RuleError,
  type RuleSet,
} from '../../rules/index.ts';
import { CAMPAIGN_EVENT, campaignRuleId } from '../core/campaign.ts';
import { isLive, type Campaign, type CampaignSchedule } from './model.ts';

/**
 * How long a completed campaign's rule stays in the engine's set: its last run's members may
 * still be on their way through the events topic behind a lagging engine, and must find it.
 */
export const COMPLETED_RULE_GRACE_MS = 7 * 86_400_000;

/** The rule a campaign compiles to (a rule file's JSON, checked and compiled by the rules room). */
export function campaignRuleDefinition(c: Campaign): Record<string, unknown> {
  const m = c.message;
  const conditions =
    c.audience.type === 'segment'
      ? {
          all: [
            {
              fact: 'segments',
              path: `$[${JSON.stringify(c.audience.segment)}]`,
              operator: 'equal',
              value: true,
            },
          ],
        }
      : c.audience.type === 'filter'
        ? c.audience.conditions
        : undefined;
  const experiment =
    m.holdout !== undefined || m.variants !== undefined
      ? {
          ...(m.holdout !== undefined ? { holdout: m.holdout } : {}),
          ...(m.variants !== undefined ? { variants: m.variants } : {}),
        }
      : undefined;
  return {
    id: campaignRuleId(c.id),
    description: `campaign "${c.name}"`,
    enabled: true,
    category: m.category ?? 'marketing',
    ...(m.messageType !== undefined ? { messageType: m.messageType } : {}),
    priority: m.priority ?? 0,
    trigger: { event: CAMPAIGN_EVENT },
    ...(conditions !== undefined ? { conditions } : {}),
    action: { send: { template: m.template, channels: m.channels } },
    ...(experiment ? { experiment } : {}),
    ...(m.goal ? { goal: m.goal } : {}),
    ...(m.expiresAfter ? { expiresAfter: m.expiresAfter } : {}),
  };
}

/** A problem of a campaign, at the field of the API's document that causes it. */
export interface CampaignProblem {
  field: string;
  message: string;
}

/** Where a path of the compiled rule comes from in the campaign. */
function fieldOf(c: Campaign, rulePath: string): string {
  const p = rulePath.replace(/^\$\.?/, '');
  if (p.startsWith('conditions'))
    return c.audience.type === 'segment'
      ? 'audience.segment'
      : `audience.${p.replace(/\[(\d+)\]/g, '[$1]')}`;
  if (p.startsWith('action.send.')) return `message.${p.slice('action.send.'.length)}`;
  if (p.startsWith('experiment.')) return `message.${p.slice('experiment.'.length)}`;
  if (/^(goal|expiresAfter|priority|category|messageType)/.test(p)) return `message.${p}`;
  return p === '' ? 'body' : p;
}

const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})$/;

/** Epoch ms of an ISO 8601 instant that names its offset, or null. */
export function parseInstant(text: string): number | null {
  if (!ISO_WITH_ZONE.test(text)) return null;
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? ms : null;
}

function scheduleProblems(s: CampaignSchedule): CampaignProblem[] {
  const out: CampaignProblem[] = [];
  const instant = (field: string, text: string) => {
    if (parseInstant(text) === null)
      out.push({
        field,
        message: `${JSON.stringify(text)} is not an instant: write ISO 8601 with its offset, e.g. "2026-12-04T10:00:00+01:00" or "2026-12-04T09:00:00Z"`,
      });
  };
  if (s.type === 'at') instant('schedule.at', s.at);
  if (s.type === 'recurring') {
    const cron = cronProblem(s.cron);
    if (cron !== null) out.push({ field: 'schedule.cron', message: cron });
    if (s.timezone !== 'user' && !isValidTimezone(s.timezone))
      out.push({
        field: 'schedule.timezone',
        message: `unknown timezone ${JSON.stringify(s.timezone)}: use "user" (each user's own zone) or an IANA zone such as "Europe/Berlin"`,
      });
    if (s.endsAt !== undefined) instant('schedule.endsAt', s.endsAt);
  }
  return out;
}

/**
 * Everything wrong with a campaign against the rules in force: its schedule, and its rule as
 * the rules room checks it (segments that exist, conditions, templates when `templates` is given).
 */
export function campaignProblems(
  c: Campaign,
  base: RuleSet,
  opts: { templates?: Set<string>; messageTypes?: MessageTypes } = {},
): CampaignProblem[] {
  const problems = scheduleProblems(c.schedule);
  const res = extendRuleSet(
    base,
    [{ file: `campaign:${c.id}`, content: campaignRuleDefinition(c) }],
    opts,
  );
  if (!res.ok)
    for (const e of res.errors) problems.push({ field: fieldOf(c, e.path), message: e.message });
  return problems;
}

/** Whether a campaign's rule belongs in the engine's set at `now`. */
export function inEngineSet(c: Campaign, now: number): boolean {
  if (isLive(c.state)) return true;
  if (c.state !== 'completed' || c.endedAt === null) return false;
  return Date.parse(c.endedAt) + COMPLETED_RULE_GRACE_MS > now;
}

export interface CampaignRuleSetResult {
  ruleSet: RuleSet;
  /** Campaigns whose rule no longer compiles against the rules in force (a segment removed since). */
  refused: { campaignId: string; errors: RuleError[] }[];
}

/** The rule files' set with the rules of the campaigns the engine evaluates at `now`. */
export function campaignRuleSet(
  base: RuleSet,
  campaigns: Iterable<Campaign>,
  now: number,
): CampaignRuleSetResult {
  const refused: CampaignRuleSetResult['refused'] = [];
  const extra: { file: string; content: unknown }[] = [];
  for (const c of campaigns) {
    if (!inEngineSet(c, now)) continue;
    const file = { file: `campaign:${c.id}`, content: campaignRuleDefinition(c) };
    // Each alone first: one campaign that no longer compiles must not take the others down.
    const alone = extendRuleSet(base, [file]);
    if (alone.ok) extra.push(file);
    else refused.push({ campaignId: c.id, errors: alone.errors });
  }
  const all = extendRuleSet(base, extra);
  if (!all.ok) throw new Error('campaign rules that compile alone must compile together');
  return { ruleSet: all.ruleSet, refused };
}

/** The campaigns the rule set follows: a view that says when it changed. */
export interface CampaignSource {
  list(): Campaign[];
  /** Increments with every applied change. */
  version(): number;
}

/**
 * The live rule set of a process that evaluates rules: the rule files (`base`, hot-reloaded)
 * plus the campaigns' rules, rebuilt when either changes (or a completed campaign's grace
 * ends). `current()` is read per event, so it only compares versions on the hot path.
 */
export function createCampaignRuleSet(deps: {
  base: () => RuleSet;
  campaigns: CampaignSource;
  logger: Logger;
  clock?: () => number;
  onSwap?: (ruleSet: RuleSet) => void;
}): { current(): RuleSet } {
  const clock = deps.clock ?? Date.now;
  const log = deps.logger.child({ component: 'campaign-rules' });
  let built: {
    base: RuleSet;
    version: number;
    ruleSet: RuleSet;
    /** When a completed campaign in the set leaves it. */
    until: number;
    refused: string;
  } | null = null;

  function rebuild(base: RuleSet, version: number, now: number): RuleSet {
    const campaigns = deps.campaigns.list();
    const { ruleSet, refused } = campaignRuleSet(base, campaigns, now);
    let until = Infinity;
    for (const c of campaigns)
      if (c.state === 'completed' && c.endedAt !== null && inEngineSet(c, now))
        until = Math.min(until, Date.parse(c.endedAt) + COMPLETED_RULE_GRACE_MS);
    const refusedKey = refused.map((r) => r.campaignId).join(',');
    if (refusedKey !== built?.refused)
      for (const r of refused)
        log.error(
          { campaignId: r.campaignId, errors: r.errors.map((e) => `${e.path}: ${e.message}`) },
          'campaign left out of the rule set: its rule does not compile against the rules in force',
        );
    const swapped = ruleSet.version !== built?.ruleSet.version;
    built = { base, version, ruleSet, until, refused: refusedKey };
    if (swapped) {
      log.info(
        { version: ruleSet.version, campaigns: ruleSet.rules.length - base.rules.length },
        'rule set with campaigns in force',
      );
      deps.onSwap?.(ruleSet);
    }
    return ruleSet;
  }

  return {
    current() {
      const base = deps.base();
      const version = deps.campaigns.version();
      if (built && built.base === base && built.version === version) {
        if (built.until === Infinity) return built.ruleSet;
        const now = clock();
        if (now < built.until) return built.ruleSet;
        return rebuild(base, version, now);
      }
      return rebuild(base, version, clock());
    },
  };
}
