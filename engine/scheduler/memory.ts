// In-memory user directory and progress store with the Redis ones' semantics (same shards,
// same member order and cursors, same lease rules), for unit tests and the embedded demo.
import type { Logger } from 'pino';
import type { InMemoryBus, Subscription } from '../../platform/bus.ts';
import type { Registry } from '../../platform/metrics.ts';
import type { RuleSet } from '../../rules/types.ts';
import type { UserDirectory } from './directory.ts';
import type { FanOutJob } from './jobs.ts';
import { shardOf } from './directory.ts';
import type { DirectoryChange, ZoneProgress } from './plan.ts';
import type { ProgressStore, RuleProgress } from './progress.ts';
import {
  createSchedulerService,
  type SchedulerService,
  type SchedulerServiceConfig,
} from './scheduler-service.ts';

export function createMemoryDirectory(): UserDirectory & { entries(): Map<string, string> } {
  const zoneOf = new Map<string, string>();
  const zones = new Map<string, number>();
  const member = (zone: string, userId: string) => `${zone}\n${userId}`;
  return {
    async apply(changes: Map<string, DirectoryChange>, seenAt = 0) {
      let n = 0;
      for (const [userId, c] of changes) {
        const old = zoneOf.get(userId);
        if (c.op === 'delete') {
          if (old !== undefined) {
            zoneOf.delete(userId);
            n++;
          }
          continue;
        }
        const zone = c.op === 'set' || c.op === 'add' ? c.zone : 'UTC';
        if (!zones.has(zone)) zones.set(zone, seenAt);
        if ((c.op === 'set' || old === undefined) && old !== zone) {
          zoneOf.set(userId, zone);
          n++;
        }
      }
      return n;
    },
    async zones() {
      return new Map([...zones].sort(([a], [b]) => (a < b ? -1 : 1)));
    },
    async page(shard, zone, cursor, limit) {
      const found = [...zoneOf]
        .filter(([u, z]) => shardOf(u) === shard && (zone === null || z === zone))
        .map(([u, z]) => member(z, u))
        .sort()
        .filter((m) => cursor === null || m > cursor)
        .slice(0, limit);
      return {
        userIds: found.map((m) => m.slice(m.indexOf('\n') + 1)),
        cursor: found.length < limit ? null : found[found.length - 1]!,
      };
    },
    async zoneOf(userId) {
      return zoneOf.get(userId) ?? null;
    },
    async zonesOf(userIds) {
      return userIds.map((u) => zoneOf.get(u) ?? null);
    },
    async size() {
      return zoneOf.size;
    },
    async count(zone) {
      if (zone === null) return zoneOf.size;
      let n = 0;
      for (const z of zoneOf.values()) if (z === zone) n++;
      return n;
    },
    entries: () => new Map(zoneOf),
  };
}

export function createMemoryProgressStore(
  clock: () => number = Date.now,
): ProgressStore & { leaseHolder(ruleId: string): string | null } {
  const leases = new Map<string, { token: string; until: number }>();
  const progress = new Map<
    string,
    { since: number | null; disabledAt: number | null; zones: Map<string, ZoneProgress> }
  >();
  const holder = (ruleId: string) => {
    const l = leases.get(ruleId);
    return l && l.until > clock() ? l.token : null;
  };
  const rule = (ruleId: string) => {
    let p = progress.get(ruleId);
    if (!p) progress.set(ruleId, (p = { since: null, disabledAt: null, zones: new Map() }));
    return p;
  };
  return {
    async acquire(ruleId, token, ttlMs) {
      const h = holder(ruleId);
      if (h !== null && h !== token) return false;
      leases.set(ruleId, { token, until: clock() + ttlMs });
      return true;
    },
    async release(ruleId, token) {
      if (holder(ruleId) === token) leases.delete(ruleId);
    },
    async load(ruleId): Promise<RuleProgress> {
      const p = rule(ruleId);
      return {
        since: p.since,
        disabledAt: p.disabledAt,
        zones: new Map([...p.zones].map(([k, v]) => [k, { ...v }])),
      };
    },
    async markDisabled(ruleId, at) {
      rule(ruleId).disabledAt = at;
    },
    async initSince(ruleId, since) {
      const p = rule(ruleId);
      p.since ??= since;
      return p.since;
    },
    async save(ruleId, token, ttlMs, field, value) {
      if (holder(ruleId) !== token) return false;
      leases.set(ruleId, { token, until: clock() + ttlMs });
      rule(ruleId).zones.set(field, { ...value });
      return true;
    },
    leaseHolder: holder,
  };
}

/** The scheduler on the in-memory bus with in-memory directory and progress: one process, no services (demo, tests). */
export function createMemoryScheduler(
  config: SchedulerServiceConfig,
  deps: {
    bus: InMemoryBus;
    ruleSet: () => RuleSet;
    logger: Logger;
    registry: Registry;
    clock?: () => number;
    /** Fan-outs beside the rules (the demo's campaigns), given the directory they page through. */
    jobs?: (directory: UserDirectory) => () => FanOutJob[];
  },
): {
  service: SchedulerService;
  directory: ReturnType<typeof createMemoryDirectory>;
  progress: ReturnType<typeof createMemoryProgressStore>;
} {
  const directory = createMemoryDirectory();
  const progress = createMemoryProgressStore(deps.clock);
  const service = createSchedulerService(config, {
    bus: deps.bus,
    directory,
    ...(deps.jobs ? { jobs: deps.jobs(directory) } : {}),
    progress,
    ruleSet: deps.ruleSet,
    committedOffsets: async (groupId, topic) => {
      const sub: Subscription = { groupId, topics: [topic], eachBatch: async () => {} };
      const ends = await deps.bus.endOffsets(topic);
      return new Map(
        [...ends.keys()].map((partition) => [
          partition,
          String(deps.bus.committedOffset(sub, { topic, partition })),
        ]),
      );
    },
    logger: deps.logger,
    registry: deps.registry,
    ...(deps.clock ? { clock: deps.clock } : {}),
  });
  return { service, directory, progress };
}
