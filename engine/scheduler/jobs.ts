// What the scheduler fans out: a job is a schedule (when its occurrences fall, in which zone),
// an audience to page through, and the event each member gets. Schedule rules are jobs over
// the whole directory with `schedule.occurrence` events; campaigns (campaign-jobs.ts) are jobs
// over the directory or an uploaded list with `campaign.member` events, a rate and a state the
// fan-out follows. Both run through the same leases, catch-up window, positions and pages.
import type { NormalisedEvent } from '../../platform/contracts.ts';
import type { CompiledRule } from '../../rules/types.ts';
import { occurrenceEvent, scheduleTrigger } from '../core/schedule.ts';
import type { DirectoryPage, UserDirectory } from './directory.ts';
import { DIRECTORY_SHARDS } from './directory.ts';
import { ruleOccurrences, type OccurrenceSource } from './plan.ts';

/** Who a job's runs ask, page by page with a stable cursor per shard. */
export interface AudienceSource {
  shards: number;
  /** Up to `limit` members of `shard` after `cursor`: of one zone, or of every zone for null. */
  page(
    shard: number,
    zone: string | null,
    cursor: string | null,
    limit: number,
  ): Promise<DirectoryPage>;
  /** How many members a run over `zone` (null: every zone) asks: the `planned` of its progress. */
  count(zone: string | null): Promise<number>;
}

export interface FanOutJob {
  /** Names the job's lease and progress: the rule id, or `campaign.<id>`. */
  id: string;
  kind: 'rule' | 'campaign';
  /** Changes whenever what is due changes (another schedule): cached next occurrences are dropped. */
  sig: string;
  /** `user`: one stream of occurrences per directory zone; else the IANA zone they all run in. */
  timezone: string;
  occurrences: OccurrenceSource;
  /** Occurrences after this instant only; null: after the time a scheduler first saw the job. */
  since: number | null;
  /** Zones a `user` job covers even when no directory user is filed there yet. */
  alwaysZones?: readonly string[];
  audience: AudienceSource;
  /** The event asking the engine about `userId` for the occurrence `at`, which runs in `zone`. */
  event(userId: string, at: number, zone: string, receivedAt: number): NormalisedEvent;
  /** Members per second at most; null: as fast as pages are acknowledged. */
  ratePerSecond: number | null;
  /** Checked before every page: false ends the fan-out at once (a stopped campaign). */
  active(): boolean;
  /** Before an occurrence's first page (not when resumed): false leaves it (a campaign cancelled meanwhile). */
  beforeRun?(at: number): Promise<boolean>;
  /** Every occurrence is done or skipped and none is left (a one-off campaign, one past its end). */
  onExhausted?(): Promise<void>;
}

/** The whole directory, by its 64 shards. */
export function directoryAudience(directory: UserDirectory): AudienceSource {
  return {
    shards: DIRECTORY_SHARDS,
    page: (shard, zone, cursor, limit) => directory.page(shard, zone, cursor, limit),
    count: (zone) => directory.count(zone),
  };
}

/** A `{schedule}` rule as a job: every directory user gets its `schedule.occurrence` events. */
export function ruleJob(rule: CompiledRule, directory: UserDirectory): FanOutJob {
  const trigger = scheduleTrigger(rule.def);
  if (!trigger) throw new Error(`rule ${rule.def.id} has no schedule trigger`);
  const ruleId = rule.def.id;
  return {
    id: ruleId,
    kind: 'rule',
    sig: JSON.stringify(rule.def.trigger),
    timezone: trigger.timezone,
    occurrences: ruleOccurrences(rule),
    since: null,
    audience: directoryAudience(directory),
    event: (userId, at, _zone, receivedAt) => occurrenceEvent(ruleId, userId, at, receivedAt),
    ratePerSecond: null,
    active: () => true,
  };
}
