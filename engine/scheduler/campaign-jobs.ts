// Campaigns as fan-out jobs. A campaign's runs are its schedule's occurrences: one instant
// (`now`: when it was scheduled; `at`), or a cron in a fixed zone or in each user's zone, up to
// its end. Its audience is the directory (the engine then applies the segment or filter to
// each user's real state) or its uploaded list. Each member of a run gets a `campaign.member`
// event whose id derives from (campaign, run, user). The scheduler moves the campaign to
// `running` before its first page and to `completed` when no run is left; a stopped campaign's
// fan-out ends before its next page.
import type { Logger } from 'pino';
import { campaignMemberEvent, campaignRuleId, campaignRunId } from '../core/campaign.ts';
import { cronOccurrences, MAX_OCCURRENCES, nextCronOccurrence } from '../core/schedule.ts';
import type { AudienceLists } from '../campaigns/audience.ts';
import { parseInstant } from '../campaigns/compile.ts';
import { isLive, transition, type Campaign } from '../campaigns/model.ts';
import type { CampaignTable } from '../campaigns/table.ts';
import type { UserDirectory } from './directory.ts';
import { directoryAudience, type AudienceSource, type FanOutJob } from './jobs.ts';
import type { OccurrenceSource } from './plan.ts';

/** The zone of list members the directory does not know (as for users without a zone). */
const UNKNOWN_ZONE = 'UTC';

/** One instant, as a source of occurrences. */
export function onceAt(at: number): OccurrenceSource {
  return {
    between: (from, to) => (at > from && at <= to ? [at] : []),
    next: (after) => (at > after ? at : null),
  };
}

/** A cron expression's occurrences, none after `endsAt`. */
export function cronUntil(cron: string, endsAt: number | null): OccurrenceSource {
  return {
    between(from, to, tz) {
      const end = endsAt === null ? to : Math.min(to, endsAt);
      return cronOccurrences(cron, from, end, tz).slice(0, MAX_OCCURRENCES);
    },
    next(after, tz) {
      const next = nextCronOccurrence(cron, after, tz);
      return next === null || (endsAt !== null && next > endsAt) ? null : next;
    },
  };
}

/**
 * An uploaded list: one shard, in id order. A run in one zone keeps the members the directory
 * files there (unknown ones run in UTC), so counting a zone reads the whole list.
 */
export function listAudience(
  lists: AudienceLists,
  campaignId: string,
  directory: UserDirectory,
): AudienceSource {
  const inZone = async (userIds: string[], zone: string) => {
    const zones = await directory.zonesOf(userIds);
    return userIds.filter((_, i) => (zones[i] ?? UNKNOWN_ZONE) === zone);
  };
  return {
    shards: 1,
    async page(_shard, zone, cursor, limit) {
      const p = await lists.page(campaignId, cursor, limit);
      return zone === null ? p : { userIds: await inZone(p.userIds, zone), cursor: p.cursor };
    },
    async count(zone) {
      if (zone === null) return lists.size(campaignId);
      let n = 0;
      let cursor: string | null = null;
      do {
        const p = await lists.page(campaignId, cursor, 5000);
        n += (await inZone(p.userIds, zone)).length;
        cursor = p.cursor;
      } while (cursor !== null);
      return n;
    },
  };
}

export interface CampaignJobDeps {
  table: CampaignTable;
  lists: AudienceLists;
  directory: UserDirectory;
  /** Members per second of campaigns that set no rate (LC_CAMPAIGN_RATE; 0: unthrottled). */
  defaultRate: number;
  logger: Logger;
  clock?: () => number;
}

/** When a campaign's runs fall, from when, and in which zone (null: a schedule the API should have refused). */
export function campaignTiming(
  c: Campaign,
): { occurrences: OccurrenceSource; since: number; timezone: string; once: boolean } | null {
  const scheduledAt = c.scheduledAt === null ? null : Date.parse(c.scheduledAt);
  if (scheduledAt === null || !Number.isFinite(scheduledAt)) return null;
  const s = c.schedule;
  if (s.type === 'now' || s.type === 'at') {
    const at = s.type === 'now' ? scheduledAt : parseInstant(s.at);
    if (at === null) return null;
    return { occurrences: onceAt(at), since: at - 1, timezone: 'UTC', once: true };
  }
  const endsAt = s.endsAt === undefined ? null : parseInstant(s.endsAt);
  return {
    occurrences: cronUntil(s.cron, endsAt),
    since: scheduledAt,
    timezone: s.timezone,
    once: false,
  };
}

/** The fan-out jobs of the live (scheduled or running) campaigns. */
export function campaignJobs(deps: CampaignJobDeps): FanOutJob[] {
  const log = deps.logger.child({ component: 'scheduler' });
  const clock = deps.clock ?? Date.now;
  const jobs: FanOutJob[] = [];
  for (const c of deps.table.list()) {
    if (!isLive(c.state)) continue;
    const timing = campaignTiming(c);
    if (timing === null) {
      log.error(
        { campaignId: c.id, schedule: c.schedule },
        'campaign has no usable schedule; it is not fanned out',
      );
      continue;
    }
    const id = c.id;
    const live = () => isLive(deps.table.get(id)?.state ?? 'cancelled');
    /** Moves the campaign on (start, complete) unless it is already there or no longer live. */
    const advance = async (action: 'start' | 'complete'): Promise<boolean> => {
      const { after } = await deps.table.change(id, (cur) => {
        // The view may lag a write of another process: decided on the latest state, under the lock.
        if (!cur || !isLive(cur.state)) return null;
        const t = transition(cur.state, action);
        if (!t.ok) return null; // already running: nothing to record
        const at = new Date(clock()).toISOString();
        return {
          ...cur,
          state: t.next,
          updatedAt: at,
          updatedBy: 'scheduler',
          ...(action === 'start' ? { startedAt: at } : { endedAt: at }),
        };
      });
      return action === 'start' ? after?.state === 'running' : true;
    };
    jobs.push({
      id: campaignRuleId(id),
      kind: 'campaign',
      sig: JSON.stringify([c.schedule, c.scheduledAt, c.audience.type]),
      timezone: timing.timezone,
      occurrences: timing.occurrences,
      since: timing.since,
      ...(c.audience.type === 'list' ? { alwaysZones: [UNKNOWN_ZONE] } : {}),
      audience:
        c.audience.type === 'list'
          ? listAudience(deps.lists, id, deps.directory)
          : directoryAudience(deps.directory),
      event: (userId, at, zone, receivedAt) =>
        campaignMemberEvent(
          id,
          campaignRunId(at, timing.once ? null : zone),
          userId,
          at,
          receivedAt,
        ),
      ratePerSecond: c.throttle?.perSecond ?? (deps.defaultRate > 0 ? deps.defaultRate : null),
      active: live,
      async beforeRun() {
        const started = await advance('start');
        if (!started) log.info({ campaignId: id }, 'campaign no longer live; run not started');
        return started;
      },
      async onExhausted() {
        await advance('complete');
        log.info({ campaignId: id }, 'campaign completed: no run left');
      },
    });
  }
  return jobs;
}
