// Per-rule fan-out progress and the lease that makes one scheduler instance at a time fan out
// a rule. Both keys of a rule share the hash tag `{sched:<ruleId>}`, so the progress write
// can check the lease in the same script (one slot, legal on Redis Cluster): an instance
// that lost its lease (paused, partitioned) can no longer move the rule's progress.
import type { Redis } from 'ioredis';
import type { KeySpace } from '../../platform/keys.ts';
import type { ZoneProgress } from './plan.ts';

// KEYS: lease. ARGV: token, ttl ms. Takes a free lease or renews our own.
const ACQUIRE = `
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`;

// KEYS: lease, progress. ARGV: token, ttl ms, then field/value pairs. Writes and renews only under our lease.
const SAVE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
`;

// KEYS: lease. ARGV: token.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** Progress of one rule: when the scheduler first saw it, when it last saw it disabled, and per zone field its ZoneProgress. */
export interface RuleProgress {
  since: number | null;
  /** The last time a scheduler saw the rule loaded but disabled: occurrences up to then are never fanned out. */
  disabledAt: number | null;
  zones: Map<string, ZoneProgress>;
}

export interface ProgressStore {
  /** Takes the rule's lease for `token`, or renews it; false when another instance holds it. */
  acquire(ruleId: string, token: string, ttlMs: number): Promise<boolean>;
  release(ruleId: string, token: string): Promise<void>;
  load(ruleId: string): Promise<RuleProgress>;
  /** Records that the rule is loaded but disabled now (no lease needed: it only moves a floor up). */
  markDisabled(ruleId: string, at: number): Promise<void>;
  /** Sets `since` unless already set; returns the stored value. */
  initSince(ruleId: string, since: number): Promise<number>;
  /** Stores a zone's progress and renews the lease, only while `token` holds it; false otherwise. */
  save(
    ruleId: string,
    token: string,
    ttlMs: number,
    zoneField: string,
    progress: ZoneProgress,
  ): Promise<boolean>;
}

type Scripted = Redis & {
  lcSchedAcquire(lease: string, token: string, ttl: number): Promise<number>;
  lcSchedSave(
    lease: string,
    progress: string,
    token: string,
    ttl: number,
    ...fieldValues: string[]
  ): Promise<number>;
  lcSchedRelease(lease: string, token: string): Promise<number>;
};

export function createRedisProgressStore(redis: Redis, keys: KeySpace): ProgressStore {
  const tag = (ruleId: string) => `{sched:${ruleId.replace(/[{}]/g, '_')}}`;
  const leaseKey = (ruleId: string) => keys.global(`${tag(ruleId)}:lease`);
  const progressKey = (ruleId: string) => keys.global(`${tag(ruleId)}:progress`);
  if (!('lcSchedAcquire' in redis)) {
    redis.defineCommand('lcSchedAcquire', { numberOfKeys: 1, lua: ACQUIRE });
    redis.defineCommand('lcSchedSave', { numberOfKeys: 2, lua: SAVE });
    redis.defineCommand('lcSchedRelease', { numberOfKeys: 1, lua: RELEASE });
  }
  const r = redis as Scripted;
  return {
    async acquire(ruleId, token, ttlMs) {
      return (await r.lcSchedAcquire(leaseKey(ruleId), token, ttlMs)) === 1;
    },
    async release(ruleId, token) {
      await r.lcSchedRelease(leaseKey(ruleId), token);
    },
    async load(ruleId) {
      const h = await redis.hgetall(progressKey(ruleId));
      const zones = new Map<string, ZoneProgress>();
      for (const [field, value] of Object.entries(h)) {
        if (field === 'since' || field === 'disabledAt') continue;
        zones.set(field, JSON.parse(value) as ZoneProgress);
      }
      return {
        since: h.since === undefined ? null : Number(h.since),
        disabledAt: h.disabledAt === undefined ? null : Number(h.disabledAt),
        zones,
      };
    },
    async markDisabled(ruleId, at) {
      await redis.hset(progressKey(ruleId), 'disabledAt', String(at));
    },
    async initSince(ruleId, since) {
      const key = progressKey(ruleId);
      await redis.hsetnx(key, 'since', String(since));
      return Number(await redis.hget(key, 'since'));
    },
    async save(ruleId, token, ttlMs, zoneField, progress) {
      return (
        (await r.lcSchedSave(
          leaseKey(ruleId),
          progressKey(ruleId),
          token,
          ttlMs,
          zoneField,
          JSON.stringify(progress),
        )) === 1
      );
    },
  };
}

/** What a job's stored progress says about its runs, summed over its zones. */
export interface FanOutSummary {
  /** Runs (occurrences, per zone) finished. */
  runs: number;
  /** Runs given up: older than the catch-up window when a scheduler got to them. */
  skippedRuns: number;
  /** Audience members the runs so far were planned for (counted when each run started). */
  planned: number;
  /** Members published onto the events topic, as stored after each acknowledged page. */
  fannedOut: number;
  /** Runs being fanned out now, per zone. */
  inProgress: { zone: string; at: string; planned: number; fannedOut: number }[];
}

export function fanOutSummary(progress: RuleProgress): FanOutSummary {
  const out: FanOutSummary = { runs: 0, skippedRuns: 0, planned: 0, fannedOut: 0, inProgress: [] };
  for (const [field, z] of progress.zones) {
    out.runs += z.runs ?? 0;
    out.skippedRuns += z.sk ?? 0;
    out.planned += z.tp ?? 0;
    out.fannedOut += z.tn ?? 0;
    if (z.at !== undefined) {
      out.planned += z.p ?? 0;
      out.fannedOut += z.n ?? 0;
      out.inProgress.push({
        zone: field.slice(field.indexOf(':') + 1),
        at: new Date(z.at).toISOString(),
        planned: z.p ?? 0,
        fannedOut: z.n ?? 0,
      });
    }
  }
  return out;
}
