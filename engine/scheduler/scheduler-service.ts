// The scheduler: turns each occurrence of a recurring (`{schedule}`) rule into one
// `schedule.occurrence` event per directory user on `<prefix>.events`, keyed by userId, and
// each run of a campaign into one `campaign.member` event per audience member (jobs.ts).
// Two loops: a consumer group on the events topic keeps the user directory (who exists,
// in which zone), and a ticker finds due occurrences and fans them out page by page under
// a per-job lease, storing its position after every page so a killed instance's work
// resumes where it stopped. Event ids derive from (rule or campaign run, user, occurrence),
// so whatever is published twice is a duplicate the engine ignores.
import { randomUUID } from 'node:crypto';
import type { Config } from '../../platform/config.ts';
import type { Logger } from 'pino';
import type { Bus } from '../../platform/bus.ts';
import {
  createConsumeLoop,
  RecordRejected,
  stalledHealth,
  type BatchRetry,
  type ConsumeLoop,
  type StalledPartition,
} from '../../platform/consume.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import {
  reservedTypeRefusal,
  SCHEMA_ID_HEADER,
  topics,
  type NormalisedEvent,
} from '../../platform/contracts.ts';
import { Counter, Gauge, type Registry } from '../../platform/metrics.ts';
import type { RuleSet } from '../../rules/types.ts';
import { scheduleTrigger } from '../core/schedule.ts';
import type { DirectoryPage, UserDirectory } from './directory.ts';
import { ruleJob, type FanOutJob } from './jobs.ts';
import {
  closeOccurrence,
  directoryChanges,
  planOccurrences,
  totalsOf,
  type ZonePlan,
  type ZoneProgress,
} from './plan.ts';
import type { ProgressStore } from './progress.ts';
import { createThrottle, throttledPageSize } from './throttle.ts';

/** A new occurrence waits at most this long for the directory to catch up with earlier events. */
export const DIRECTORY_WAIT_MS = 300_000;
/** Pages published before the oldest one's acknowledgement is awaited (and its position stored). */
export const PAGES_IN_FLIGHT = 3;

export interface SchedulerServiceConfig {
  topicPrefix: string;
  /** Consumer group of the directory on the events topic. */
  groupId: string;
  partitions: number;
  catchUpMs: number;
  pageSize: number;
  leaseMs: number;
  tickMs: number;
  /** Create the internal topics at start (default true). */
  ensureTopics?: boolean;
  /** How a failing directory batch is retried before its partition stops (defaults: the consume loop's). */
  retry?: BatchRetry;
}

/** The scheduler's settings from the process config. */
export function schedulerConfigFrom(
  config: Pick<Config, 'kafka' | 'engine'>,
): SchedulerServiceConfig {
  return {
    topicPrefix: config.kafka.topicPrefix,
    groupId: config.engine.schedulerGroup,
    partitions: config.kafka.partitions,
    catchUpMs: config.engine.schedulerCatchUpMs,
    pageSize: config.engine.schedulerPageSize,
    leaseMs: config.engine.schedulerLeaseMs,
    tickMs: config.engine.schedulerTickMs,
  };
}

export interface SchedulerServiceDeps {
  bus: Bus;
  directory: UserDirectory;
  progress: ProgressStore;
  ruleSet: () => RuleSet;
  /** Fan-outs beside the schedule rules, read at every tick: the live campaigns (campaign-jobs.ts). */
  jobs?: () => FanOutJob[];
  /** Committed offsets of a consumer group on a topic (partition -> offset, "-1" for none). */
  committedOffsets(groupId: string, topic: string): Promise<Map<number, string>>;
  logger: Logger;
  registry: Registry;
  clock?: () => number;
  /** Fills the directory from what the events topic no longer holds (seed.ts); fan-outs wait until it has run once. */
  seed?: () => Promise<unknown>;
  /** Identifies this instance's leases (default: a random id). */
  instanceId?: string;
}

export interface SchedulerHealth {
  ok: boolean;
  details: {
    instanceId: string;
    /** The directory was seeded from the engine's state (or needs no seed); fan-outs wait for it. */
    directorySeeded: boolean;
    directoryPartitions: number;
    /** Every event published before this instant is in the directory (null: not yet known). */
    directorySyncedAt: string | null;
    fanningOut: string[];
    lastFanOutAt: string | null;
    lastError: string | null;
    /** Directory partitions stopped because a batch kept failing (health is not ok while any). */
    stalled: (StalledPartition & { reason: string })[];
  };
}

export interface SchedulerService {
  readonly name: 'scheduler';
  start(): Promise<void>;
  /** Graceful: the running fan-outs stop after their current page (position stored), then the directory consumer leaves. */
  stop(): Promise<void>;
  health(): SchedulerHealth;
  /** One pass over the rules now (the ticker calls it every tickMs); resolves when the fan-outs it started are done. */
  tick(): Promise<void>;
}

type FanOutResult = 'done' | 'lost' | 'stopped';

interface Target {
  /** Progress field: `z:<zone>` for user-zone jobs, `all:<zone>` for fixed-zone jobs. */
  field: string;
  /** Zone the occurrences are evaluated in. */
  tz: string;
  /** Directory zone of the audience, or null for every user. */
  audience: string | null;
  /** When the directory first saw a user in this zone: its occurrences start there. */
  firstSeen: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createSchedulerService(
  config: SchedulerServiceConfig,
  deps: SchedulerServiceDeps,
): SchedulerService {
  const log = deps.logger.child({ component: 'scheduler' });
  const clock = deps.clock ?? Date.now;
  const eventsTopic = topics(config.topicPrefix).events;
  const token = deps.instanceId ?? randomUUID();
  const publisher = deps.bus.publisher();
  const registry = deps.registry;
  const metrics = {
    published: new Counter({
      name: 'lifecycle_scheduler_events_published_total',
      help: 'schedule.occurrence and campaign.member events published, per rule or campaign (`campaign.<id>`), replayed pages included.',
      labelNames: ['rule'],
      registers: [registry],
    }),
    occurrences: new Counter({
      name: 'lifecycle_scheduler_occurrences_total',
      help: 'Occurrences (campaign runs) per rule or campaign and zone finished (done) or given up as older than the catch-up window (skipped).',
      labelNames: ['rule', 'outcome'],
      registers: [registry],
    }),
    directory: new Counter({
      name: 'lifecycle_scheduler_directory_changes_total',
      help: 'User directory entries added, moved or removed.',
      registers: [registry],
    }),
    syncLag: new Gauge({
      name: 'lifecycle_scheduler_directory_sync_age_seconds',
      help: 'Age of the newest instant up to which the directory is known complete.',
      registers: [registry],
    }),
  };

  let consumer: ConsumeLoop | null = null;
  let stopping = false;
  let loop: Promise<void> | null = null;
  let wake: (() => void) | null = null;
  const running = new Map<string, Promise<void>>();
  /** Per rule and progress field: the next occurrence after the last known watermark. */
  const nextKnown = new Map<string, { sig: string; next: number | null }>();
  let syncedAt = -Infinity;
  let snapshot: { t: number; ends: Map<number, string> } | null = null;
  let lastFanOutAt: number | null = null;
  let lastError: string | null = null;

  async function targetsOf(
    job: FanOutJob,
    zones: () => Promise<Map<string, number>>,
  ): Promise<Target[]> {
    const tz = job.timezone;
    if (tz !== 'user') return [{ field: `all:${tz}`, tz, audience: null, firstSeen: 0 }];
    const known = new Map(await zones());
    for (const z of job.alwaysZones ?? []) if (!known.has(z)) known.set(z, 0);
    return [...known].map(([z, firstSeen]) => ({
      field: `z:${z}`,
      tz: z,
      audience: z,
      firstSeen,
    }));
  }

  /** Has the directory consumer group caught up with every event published up to a recent instant? */
  async function checkDirectorySync(): Promise<void> {
    const now = clock();
    snapshot ??= { t: now, ends: await deps.bus.endOffsets(eventsTopic) };
    const committed = await deps.committedOffsets(config.groupId, eventsTopic);
    const caughtUp = [...snapshot.ends].every(
      ([p, end]) => BigInt(end) === 0n || BigInt(committed.get(p) ?? '-1') >= BigInt(end),
    );
    if (caughtUp) {
      syncedAt = snapshot.t;
      snapshot = null;
    }
    metrics.syncLag.set(Number.isFinite(syncedAt) ? (now - syncedAt) / 1000 : -1);
  }

  /** A new occurrence starts once earlier events are in the directory, or after DIRECTORY_WAIT_MS. */
  const warnedBehind = new Set<string>();
  function mayStart(job: FanOutJob, at: number, now: number): boolean {
    if (at <= syncedAt) return true;
    if (now - at < DIRECTORY_WAIT_MS) return false;
    const key = `${job.id}\0${at}`;
    if (warnedBehind.has(key)) return true;
    if (warnedBehind.size > 10_000) warnedBehind.clear();
    warnedBehind.add(key);
    log.warn(
      {
        ruleId: job.id,
        occurrence: new Date(at).toISOString(),
        directorySyncedAt: Number.isFinite(syncedAt) ? new Date(syncedAt).toISOString() : null,
      },
      'user directory is behind; fanning out an occurrence with the directory as it is',
    );
    return true;
  }

  function record(e: NormalisedEvent) {
    return { key: e.userId, ...encodeWithHeader(eventCodec, e) };
  }

  async function fanOut(job: FanOutJob, target: Target, plan: ZonePlan): Promise<FanOutResult> {
    const ruleId = job.id;
    const due = plan.due!;
    const w = plan.progress.w;
    const totals = totalsOf(plan.progress);
    const shards = job.audience.shards;
    const pageSize = throttledPageSize(config.pageSize, job.ratePerSecond);
    const throttle = job.ratePerSecond === null ? null : createThrottle(job.ratePerSecond, clock);
    let lastRenew = clock();
    let published = 0;
    const save = async (p: ZoneProgress) => {
      lastRenew = clock();
      return deps.progress.save(ruleId, token, config.leaseMs, target.field, p);
    };
    // What this occurrence was planned for and has published, as stored (a resumed run goes on counting).
    let planned = plan.progress.p ?? 0;
    let count = due.resumed ? (plan.progress.n ?? 0) : 0;
    if (!due.resumed) {
      planned = await job.audience.count(target.audience);
      if (!(await save({ ...totals, w, at: due.at, s: due.shard, p: planned, n: 0 })))
        return 'lost';
    }
    const read = (shard: number, cursor: string | null) =>
      job.audience.page(shard, target.audience, cursor, pageSize).then((page) => ({ shard, page }));
    // Pages in flight, oldest first: a position is stored only once its page and every page
    // before it are acknowledged, so a crash publishes at most PAGES_IN_FLIGHT pages again.
    const inflight: { acked: Promise<void>; next: ZoneProgress }[] = [];
    const settleOldest = async (): Promise<boolean> => {
      const f = inflight.shift()!;
      await f.acked;
      return save(f.next);
    };
    let reading: Promise<{ shard: number; page: DirectoryPage }> | null =
      due.shard < shards ? read(due.shard, due.cursor) : null;
    // Graceful, or the job was stopped: store the position after what was published, so a restart repeats nothing.
    const halt = async (): Promise<FanOutResult> => {
      while (inflight.length > 0) if (!(await settleOldest())) return 'lost';
      return 'stopped';
    };
    try {
      while (reading) {
        if (stopping || !job.active()) return await halt();
        if (clock() - lastRenew > config.leaseMs / 3) {
          lastRenew = clock();
          if (!(await deps.progress.acquire(ruleId, token, config.leaseMs))) return 'lost';
        }
        const { shard, page } = await reading;
        if (page.userIds.length > 0 && throttle) {
          const at = throttle.take(page.userIds.length);
          while (clock() < at && !stopping && job.active())
            await sleep(Math.min(at - clock(), 100));
          if (stopping || !job.active()) {
            reading = null;
            return await halt();
          }
        }
        // Read the next page while this one is published.
        reading =
          page.cursor !== null
            ? read(shard, page.cursor)
            : shard + 1 < shards
              ? read(shard + 1, null)
              : null;
        if (page.userIds.length === 0) continue;
        const now = clock();
        const acked = publisher.publish(
          eventsTopic,
          page.userIds.map((u) => record(job.event(u, due.at, target.tz, now))),
        );
        acked.catch(() => {}); // awaited in order below; this only keeps a failure from going unhandled meanwhile
        published += page.userIds.length;
        count += page.userIds.length;
        metrics.published.inc({ rule: ruleId }, page.userIds.length);
        const at = { ...totals, w, at: due.at, p: planned, n: count };
        inflight.push({
          acked,
          next:
            page.cursor !== null ? { ...at, s: shard, c: page.cursor } : { ...at, s: shard + 1 },
        });
        if (inflight.length >= PAGES_IN_FLIGHT && !(await settleOldest())) return 'lost';
      }
      while (inflight.length > 0) if (!(await settleOldest())) return 'lost';
    } finally {
      // On an early return or a failure, let what is still in flight finish before anything else runs.
      await Promise.allSettled([...inflight.map((f) => f.acked), ...(reading ? [reading] : [])]);
    }
    if (
      !(await save(
        closeOccurrence({ ...totals, w, at: due.at, p: planned, n: count }, due.at, 'done'),
      ))
    )
      return 'lost';
    metrics.occurrences.inc({ rule: ruleId, outcome: 'done' });
    lastFanOutAt = clock();
    log.info(
      {
        ruleId,
        zone: target.tz,
        audience: target.audience ?? 'all',
        occurrence: new Date(due.at).toISOString(),
        published,
        planned,
        resumed: due.resumed,
      },
      job.kind === 'campaign' ? 'campaign run fanned out' : 'schedule occurrence fanned out',
    );
    return 'done';
  }

  function logSkipped(job: FanOutJob, target: Target, s: NonNullable<ZonePlan['skipped']>): void {
    metrics.occurrences.inc({ rule: job.id, outcome: 'skipped' }, s.count);
    log.warn(
      {
        ruleId: job.id,
        zone: target.tz,
        skipped: s.count,
        truncated: s.truncated,
        first: new Date(s.first).toISOString(),
        last: new Date(s.last).toISOString(),
        catchUpMs: config.catchUpMs,
      },
      'skipping schedule occurrences older than the catch-up window or from while the rule was disabled',
    );
  }

  /** Everything due for one job: refresh what is known, then under the lease fan out occurrence after occurrence. */
  async function runJob(job: FanOutJob, zones: () => Promise<Map<string, number>>): Promise<void> {
    const ruleId = job.id;
    const sig = job.sig;
    const targets = await targetsOf(job, zones);
    const plansFrom = async () => {
      const stored = await deps.progress.load(ruleId);
      const since = job.since ?? stored.since ?? (await deps.progress.initSince(ruleId, clock()));
      const now = clock();
      return targets.map((t) => ({
        target: t,
        plan: planOccurrences(
          job.occurrences,
          t.tz,
          stored.zones.get(t.field) ?? null,
          Math.max(since, t.firstSeen),
          now,
          config.catchUpMs,
          job.kind === 'rule' ? stored.disabledAt : null,
        ),
      }));
    };
    const remember = (plans: { target: Target; plan: ZonePlan }[]) => {
      for (const { target, plan } of plans)
        nextKnown.set(`${ruleId}\0${target.field}`, { sig, next: plan.next });
    };
    const actionable = (plans: { target: Target; plan: ZonePlan }[], now: number) =>
      plans.filter(
        ({ plan }) =>
          plan.skipped !== null ||
          (plan.due !== null && (plan.due.resumed || mayStart(job, plan.due.at, now))),
      );
    // Nothing in progress, nothing due and nothing to come: a one-off campaign is over.
    const exhausted = (plans: { plan: ZonePlan }[]) =>
      job.onExhausted !== undefined &&
      plans.length > 0 &&
      plans.every(
        ({ plan }) =>
          plan.due === null &&
          plan.next === null &&
          plan.skipped === null &&
          plan.progress.at === undefined,
      );

    let plans = await plansFrom();
    remember(plans);
    if ((actionable(plans, clock()).length === 0 && !exhausted(plans)) || stopping) return;
    if (!(await deps.progress.acquire(ruleId, token, config.leaseMs))) return;
    try {
      for (;;) {
        // Re-read under the lease: another instance may have moved the progress meanwhile.
        plans = await plansFrom();
        remember(plans);
        const todo = actionable(plans, clock());
        if (stopping) return;
        if (todo.length === 0) {
          if (exhausted(plans)) await job.onExhausted!();
          return;
        }
        // Resumed occurrences first, then the oldest.
        todo.sort(
          (a, b) =>
            Number(b.plan.due?.resumed ?? false) - Number(a.plan.due?.resumed ?? false) ||
            (a.plan.due?.at ?? -Infinity) - (b.plan.due?.at ?? -Infinity),
        );
        const { target, plan } = todo[0]!;
        if (plan.skipped) {
          logSkipped(job, target, plan.skipped);
          if (
            !(await deps.progress.save(ruleId, token, config.leaseMs, target.field, plan.progress))
          )
            return;
          if (!plan.due) continue;
        }
        const due = plan.due!;
        if (!due.resumed && job.beforeRun && !(await job.beforeRun(due.at))) return;
        const result = await fanOut(job, target, plan);
        if (result === 'lost') {
          log.warn(
            { ruleId, zone: target.tz },
            'lost the lease during a fan-out; another instance continues from the stored position',
          );
          return;
        }
        if (result === 'stopped') return;
      }
    } finally {
      await deps.progress.release(ruleId, token);
      // What is due next comes from the stored progress at the next tick.
      for (const t of targets) nextKnown.delete(`${ruleId}\0${t.field}`);
    }
  }

  /** Passes pick rules one after another, so two passes never start the same rule (both would hold this instance's lease). */
  let selecting: Promise<void> = Promise.resolve();
  function pass(started: Promise<void>[]): Promise<void> {
    const p = selecting.then(() => select(started));
    selecting = p.catch(() => {});
    return p;
  }

  async function tick(): Promise<void> {
    const started: Promise<void>[] = [];
    await pass(started);
    await Promise.all(started);
  }

  let seeded = deps.seed === undefined;
  let seeding: Promise<void> | null = null;

  /**
   * A disabled rule's occurrences must not be fanned out late when it is enabled again: while
   * it is loaded but disabled, its floor follows the clock.
   */
  async function markDisabled(rs: RuleSet): Promise<void> {
    const now = clock();
    const disabled = rs.rules.filter((r) => !r.def.enabled && scheduleTrigger(r.def) !== null);
    await Promise.all(disabled.map((r) => deps.progress.markDisabled(r.def.id, now)));
  }

  async function select(started: Promise<void>[]): Promise<void> {
    if (!seeded) {
      seeding ??= deps.seed!().then(
        () => {
          seeded = true;
        },
        (err: unknown) => {
          lastError = err instanceof Error ? err.message : String(err);
          log.error({ err }, 'seeding the user directory failed; retrying at the next tick');
          seeding = null;
        },
      );
      return;
    }
    const rs = deps.ruleSet();
    await markDisabled(rs);
    const jobs = [
      ...rs.scheduled
        .filter((r) => r.def.enabled && scheduleTrigger(r.def) !== null)
        .map((r) => ruleJob(r, deps.directory)),
      ...(deps.jobs?.() ?? []),
    ];
    const now = clock();
    let zoneList: Promise<Map<string, number>> | null = null;
    const zones = () => (zoneList ??= deps.directory.zones());
    let synced = false;
    for (const job of jobs) {
      const jobId = job.id;
      if (running.has(jobId)) continue;
      const targets = await targetsOf(job, zones);
      let earliest = Infinity;
      let over = targets.length > 0;
      for (const t of targets) {
        const known = nextKnown.get(`${jobId}\0${t.field}`);
        if (!known || known.sig !== job.sig) {
          earliest = -Infinity;
          over = false;
        } else if (known.next !== null) {
          earliest = Math.min(earliest, known.next);
          over = false;
        }
      }
      // A job with nothing more to come still has to say so (a one-off campaign completes).
      if (over && job.onExhausted) earliest = -Infinity;
      if (earliest > now) continue;
      if (!synced && (earliest > syncedAt || syncedAt === -Infinity)) {
        synced = true;
        await checkDirectorySync();
      }
      if (running.has(jobId) || stopping) continue;
      const run = runJob(job, zones)
        .catch((err: unknown) => {
          lastError = err instanceof Error ? err.message : String(err);
          log.error({ err, ruleId: jobId }, 'schedule fan-out failed; retrying at the next tick');
        })
        .finally(() => running.delete(jobId));
      running.set(jobId, run);
      started.push(run);
    }
  }

  async function tickLoop(): Promise<void> {
    let passing: Promise<void> | null = null;
    while (!stopping) {
      // Fan-outs run in the background: a long one does not hold back the other rules. A pass
      // still picking rules (slow Redis or Kafka) is not queued behind again.
      passing ??= pass([])
        .catch((err: unknown) => {
          lastError = err instanceof Error ? err.message : String(err);
          log.error({ err }, 'scheduler tick failed');
        })
        .finally(() => {
          passing = null;
        });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, config.tickMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
    await passing;
  }

  return {
    name: 'scheduler',
    async start() {
      stopping = false;
      if (config.ensureTopics !== false)
        await deps.bus.ensureTopics(
          internalTopicSpecs(topics(config.topicPrefix), config.partitions),
        );
      // The engine sends malformed records to the DLQ; the directory just passes them by.
      consumer = createConsumeLoop<NormalisedEvent>(
        {
          name: 'scheduler-directory',
          groupId: config.groupId,
          topics: [eventsTopic],
          fromBeginning: true,
          concurrency: 3,
          dlqTopic: topics(config.topicPrefix).dlq,
          undecodable: 'skip',
          ...config.retry,
          decode(message) {
            if (!message.value) throw new RecordRejected('empty record value');
            const event = eventCodec.decode(message.value, message.headers[SCHEMA_ID_HEADER]);
            if (message.key !== event.userId)
              throw new RecordRejected("record key does not match the event's userId");
            // An app cannot remove a user from the directory with a forged user_deleted.
            const refusal = reservedTypeRefusal(event);
            if (refusal !== null) throw new RecordRejected(refusal);
            return event;
          },
          async handle(records) {
            const events = records.map((record) => record.value);
            const changes = directoryChanges(events);
            // A zone new in this batch counts from the batch's earliest arrival, so a user who
            // arrived before an occurrence is in it even when the directory filed them just after.
            const seenAt = events.reduce(
              (earliest, e) =>
                changes.has(e.userId) ? Math.min(earliest, e.receivedAt) : earliest,
              Infinity,
            );
            if (changes.size > 0)
              metrics.directory.inc(
                await deps.directory.apply(changes, Number.isFinite(seenAt) ? seenAt : clock()),
              );
          },
        },
        { bus: deps.bus, publisher, logger: deps.logger, registry },
      );
      await consumer.start();
      loop = tickLoop();
      log.info(
        {
          instanceId: token,
          groupId: config.groupId,
          catchUpMs: config.catchUpMs,
          pageSize: config.pageSize,
        },
        'scheduler started',
      );
    },
    async stop() {
      stopping = true;
      wake?.();
      await loop;
      await Promise.all([...running.values(), seeding]);
      await consumer?.stop();
      consumer = null;
    },
    health() {
      const directoryLoop = stalledHealth([consumer]);
      return {
        ok: consumer !== null && !stopping && directoryLoop.ok,
        details: {
          instanceId: token,
          directorySeeded: seeded,
          directoryPartitions: consumer?.assignment().length ?? 0,
          directorySyncedAt: Number.isFinite(syncedAt) ? new Date(syncedAt).toISOString() : null,
          fanningOut: [...running.keys()],
          lastFanOutAt: lastFanOutAt === null ? null : new Date(lastFanOutAt).toISOString(),
          lastError,
          stalled: directoryLoop.stalled,
        },
      };
    },
    tick,
  };
}
