// Campaigns as the engine core sees them: a campaign compiles to a rule whose id is
// `campaign.<campaignId>` and whose trigger is the reserved `campaign.member` event, one per
// audience member of a run, made by the scheduler. The event id derives from (campaign, run,
// user), so a page published twice after a crash is a duplicate, and the send it makes keeps
// its sendId.
import type { NormalisedEvent } from '../../platform/contracts.ts';
import { CAMPAIGN_RULE_ID_PREFIX } from '../../rules/index.ts';
import { deterministicId } from './ids.ts';

/** The event asking the engine about one audience member of one campaign run. */
export const CAMPAIGN_EVENT = 'campaign.member';
/** Rule ids of campaigns start with this; rule files cannot use it (rules/check.ts). */
export const CAMPAIGN_RULE_PREFIX = CAMPAIGN_RULE_ID_PREFIX;

export function campaignRuleId(campaignId: string): string {
  return `${CAMPAIGN_RULE_PREFIX}${campaignId}`;
}

/** The campaign a rule id belongs to, or null for a rule of the rule files. */
export function campaignIdOfRule(ruleId: string): string | null {
  return ruleId.startsWith(CAMPAIGN_RULE_PREFIX) ? ruleId.slice(CAMPAIGN_RULE_PREFIX.length) : null;
}

export function campaignMemberEventId(campaignId: string, runId: string, userId: string): string {
  return deterministicId('campaign', campaignId, runId, userId);
}

/**
 * The id of a run: for a one-off campaign its instant (ISO 8601, UTC); for a recurring one
 * the occurrence's wall-clock time where it falls (`2026-12-04T10:00`), so "Friday 10:00"
 * is one run per user even when the user moves to another zone between two zones' Fridays
 * (both zones' events carry the same id, and the send the same sendId).
 */
export function campaignRunId(at: number, zone: string | null): string {
  if (zone === null) return new Date(at).toISOString();
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: zone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(at);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '00';
  return `${get('year')}-${get('month')}-${get('day')}T${get('hour')}:${get('minute')}`;
}

/** One audience member of one run: `ts` is the run's instant (what the send's createdAt becomes). */
export function campaignMemberEvent(
  campaignId: string,
  runId: string,
  userId: string,
  at: number,
  receivedAt: number = at,
): NormalisedEvent {
  return {
    id: campaignMemberEventId(campaignId, runId, userId),
    userId,
    type: CAMPAIGN_EVENT,
    ts: at,
    receivedAt,
    source: 'scheduler',
    properties: { campaignId, runId },
  };
}
