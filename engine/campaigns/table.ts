// Campaign definitions live on the compacted campaigns topic (one partition, key = campaign
// id, value = the whole campaign with its state), materialised in memory by every process
// that needs them (the API, the scheduler, the engine) like a small replicated table: read
// from the beginning at start, then followed. A change is a read-modify-write under a lock per
// campaign taken after this view caught up with the topic's end, so it is made on the latest
// state; it answers once this process's own view holds it (read your writes). Compaction keeps
// the last record of a key, which is the latest revision because writers of one campaign take
// turns.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Bus, IncomingMessage, Publisher } from '../../platform/bus.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { createConsumeLoop, type ConsumeLoop } from '../../platform/consume.ts';
import type { Topics } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import { createMetricsRegistry, type Registry } from '../../platform/metrics.ts';
import type { RedisDeps } from '../../platform/redis.ts';
import type { NormalisedEvent } from '../../platform/contracts.ts';
import { CAMPAIGN_EVENT } from '../core/campaign.ts';
import { campaignRefusal, isLive, type Campaign } from './model.ts';

/** Writers of one campaign take turns through this (Redis in production, memory in the demo). */
export interface CampaignLocks {
  withLock<T>(campaignId: string, fn: () => Promise<T>): Promise<T>;
}

export function createMemoryCampaignLocks(): CampaignLocks {
  const locks = new Map<string, Promise<unknown>>();
  return {
    async withLock(id, fn) {
      const prev = locks.get(id) ?? Promise.resolve();
      const run = prev.catch(() => undefined).then(fn);
      locks.set(id, run);
      try {
        return await run;
      } finally {
        if (locks.get(id) === run) locks.delete(id);
      }
    },
  };
}

// KEYS: lock. ARGV: token.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

export function createRedisCampaignLocks(
  { redis, keys }: Pick<RedisDeps, 'redis' | 'keys'>,
  opts: { lockMs?: number; waitMs?: number } = {},
): CampaignLocks {
  const lockMs = opts.lockMs ?? 30_000;
  const waitMs = opts.waitMs ?? 20_000;
  return {
    async withLock(id, fn) {
      const key = keys.global(`campaign:lock:${id}`);
      const token = randomUUID();
      const deadline = Date.now() + waitMs;
      while ((await redis.set(key, token, 'PX', lockMs, 'NX')) !== 'OK') {
        if (Date.now() > deadline)
          throw new LifecycleError(
            ErrorCodes.Unavailable,
            `another change of campaign "${id}" is still in progress; retry in a moment`,
            { retriable: true },
          );
        await new Promise((r) => setTimeout(r, 25));
      }
      try {
        return await fn();
      } finally {
        await redis.eval(RELEASE, 1, key, token).catch(() => undefined);
      }
    },
  };
}

export interface CampaignTableConfig {
  topics: Topics;
  /** A group of this process alone, so it reads every record (see campaignViewGroup). */
  groupId: string;
  /** Longest wait for a write to show in this view, and for a catch-up (default 30 s). */
  syncTimeoutMs?: number;
  /** Create the topic at start (default true). */
  ensureTopic?: boolean;
}

export interface CampaignTableDeps {
  bus: Pick<Bus, 'consumer' | 'endOffsets' | 'ensureTopics'>;
  publisher: Publisher;
  /** Needed to change campaigns; a process that only reads them (the engine) has none. */
  locks?: CampaignLocks;
  logger: Logger;
  registry?: Registry;
}

/** The consumer group of one process's view: its own, so it reads the whole topic. */
export const campaignViewGroup = (topic: string): string =>
  `${topic}-view-${randomUUID().slice(0, 12)}`;

export interface CampaignChange {
  before: Campaign | undefined;
  /** The campaign as stored now (`before` when nothing was written). */
  after: Campaign | undefined;
  changed: boolean;
}

export interface CampaignTable {
  /** Reads the topic from the beginning; resolves once the view holds every record that was on it. */
  start(): Promise<void>;
  stop(): Promise<void>;
  health(): { ok: boolean; caughtUp: boolean; campaigns: number; stalled: number };
  get(id: string): Campaign | undefined;
  /** Every campaign, newest first. */
  list(): Campaign[];
  /** Increments with every applied change (the engine's rule set compares it). */
  version(): number;
  /** Resolves once the view has applied every record the topic held when called. */
  syncToEnd(): Promise<void>;
  /**
   * Changes one campaign: under its lock and on the latest state, `fn` returns the campaign to
   * store (its revision is set here), null to leave it as it is, or throws to refuse.
   * Resolves once this view holds the change.
   */
  change(
    id: string,
    fn: (
      current: Campaign | undefined,
    ) => Omit<Campaign, 'revision'> | null | Promise<Omit<Campaign, 'revision'> | null>,
  ): Promise<CampaignChange>;
  /** Called after each applied change with the campaign it changed. */
  onChange(listener: (campaign: Campaign) => void): () => void;
}

const WRITE_ID_HEADER = 'lc-write-id';

type Decoded = { ok: true; campaign: Campaign } | { ok: false; reason: string };

function decodeRecord(message: IncomingMessage): Decoded {
  if (!message.value) return { ok: false, reason: 'empty value' };
  let body: unknown;
  try {
    body = JSON.parse(message.value.toString('utf8'));
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const refusal = campaignRefusal(body);
  if (refusal !== null) return { ok: false, reason: refusal };
  const campaign = body as Campaign;
  if (campaign.id !== message.key) return { ok: false, reason: 'key is not the campaign id' };
  return { ok: true, campaign };
}

export function createCampaignTable(
  config: CampaignTableConfig,
  deps: CampaignTableDeps,
): CampaignTable {
  const topic = config.topics.campaigns;
  const log = deps.logger.child({ component: 'campaigns', topic });
  const syncTimeoutMs = config.syncTimeoutMs ?? 30_000;
  const campaigns = new Map<string, Campaign>();
  const listeners = new Set<(c: Campaign) => void>();
  const writeWaiters = new Map<string, () => void>();
  const offsetWaiters = new Set<{ target: bigint; resolve: () => void }>();
  let applied = 0n;
  let changes = 0;
  let caughtUp = false;
  let loop: ConsumeLoop | null = null;

  function apply(decoded: Decoded, message: IncomingMessage): void {
    if (decoded.ok) {
      const c = decoded.campaign;
      const prev = campaigns.get(c.id);
      // A replayed older revision never undoes a newer one.
      if (!prev || c.revision >= prev.revision) {
        campaigns.set(c.id, c);
        changes++;
        for (const l of listeners) {
          try {
            l(c);
          } catch (err) {
            log.warn({ err }, 'campaign change listener failed');
          }
        }
      }
    }
    const writeId = message.headers[WRITE_ID_HEADER];
    if (writeId) {
      writeWaiters.get(writeId)?.();
      writeWaiters.delete(writeId);
    }
    applied = BigInt(message.offset) + 1n;
    for (const w of [...offsetWaiters]) {
      if (applied >= w.target) {
        offsetWaiters.delete(w);
        w.resolve();
      }
    }
  }

  const timeout = <T>(p: Promise<T>, what: string, cancel: () => void): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        cancel();
        reject(
          new LifecycleError(
            ErrorCodes.Unavailable,
            `${what} did not show in this process's view of ${topic} within ${syncTimeoutMs} ms; check that Kafka is reachable and retry`,
            { retriable: true },
          ),
        );
      }, syncTimeoutMs);
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(t);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });

  async function syncToEnd(): Promise<void> {
    const end = BigInt((await deps.bus.endOffsets(topic)).get(0) ?? '0');
    if (applied >= end) return;
    let waiter: { target: bigint; resolve: () => void } | undefined;
    await timeout(
      new Promise<void>((resolve) => {
        waiter = { target: end, resolve };
        offsetWaiters.add(waiter);
      }),
      'the end of the topic',
      () => waiter && offsetWaiters.delete(waiter),
    );
  }

  async function write(c: Campaign): Promise<void> {
    const writeId = randomUUID();
    const seen = new Promise<void>((resolve) => writeWaiters.set(writeId, resolve));
    await deps.publisher.publish(topic, [
      {
        key: c.id,
        value: Buffer.from(JSON.stringify(c), 'utf8'),
        headers: { [WRITE_ID_HEADER]: writeId },
      },
    ]);
    await timeout(seen, `campaign "${c.id}"`, () => writeWaiters.delete(writeId));
  }

  return {
    async start() {
      if (config.ensureTopic !== false)
        await deps.bus.ensureTopics(
          internalTopicSpecs(config.topics, 1).filter((spec) => spec.topic === topic),
        );
      loop = createConsumeLoop<Decoded>(
        {
          name: 'campaign-view',
          groupId: config.groupId,
          topics: [topic],
          fromBeginning: true,
          dlqTopic: config.topics.dlq,
          // Every process reads every record: one this version cannot read is passed by here
          // (and logged), not dead-lettered once per process.
          decode: decodeRecord,
          async handle(records, scope) {
            for (const { value, message } of records) {
              if (!value.ok) {
                log.warn(
                  { key: message.key, offset: message.offset, reason: value.reason },
                  'campaigns topic record not understood; skipped',
                );
                scope.skip(message, 'not_understood');
              }
              apply(value, message);
            }
          },
        },
        {
          bus: deps.bus,
          publisher: deps.publisher,
          logger: deps.logger,
          registry: deps.registry ?? createMetricsRegistry({ defaults: false }),
        },
      );
      await loop.start();
      await syncToEnd();
      caughtUp = true;
      log.info({ campaigns: campaigns.size }, 'campaigns read from the topic');
    },
    async stop() {
      await loop?.stop();
      loop = null;
    },
    health() {
      const stalled = loop?.stalled().length ?? 0;
      return { ok: caughtUp && stalled === 0, caughtUp, campaigns: campaigns.size, stalled };
    },
    get: (id) => campaigns.get(id),
    list: () =>
      [...campaigns.values()].sort((a, b) =>
        a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? -1 : 1,
      ),
    version: () => changes,
    syncToEnd,
    change(id, fn) {
      if (!deps.locks) throw new Error('this view of the campaigns is read-only (no locks given)');
      return deps.locks.withLock(id, async () => {
        // Another process's change may still be on its way to this view.
        await syncToEnd();
        const before = campaigns.get(id);
        const next = await fn(before);
        if (next === null) return { before, after: before, changed: false };
        const after: Campaign = { ...next, revision: (before?.revision ?? 0) + 1 };
        await write(after);
        return { before, after: campaigns.get(id) ?? after, changed: true };
      });
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/**
 * What the engine does before it applies a batch: members of a campaign this view does not
 * know yet (the scheduler wrote `running` just before it published them) make the view catch
 * up with the topic's end first, and so do members of a live campaign when the view last
 * caught up more than `maxAgeMs` ago, so a stop is in force at most that long after it was
 * answered. Catch-ups of partitions processed at the same time are shared.
 */
export function campaignViewFreshness(
  table: Pick<CampaignTable, 'get' | 'syncToEnd'>,
  opts: { maxAgeMs?: number; clock?: () => number } = {},
): (events: readonly NormalisedEvent[]) => Promise<void> {
  const maxAgeMs = opts.maxAgeMs ?? 500;
  const clock = opts.clock ?? Date.now;
  let syncedAt = -Infinity;
  let syncing: Promise<void> | null = null;
  return async (events) => {
    let stale = false;
    for (const e of events) {
      if (e.type !== CAMPAIGN_EVENT) continue;
      const id = e.properties.campaignId;
      const c = typeof id === 'string' ? table.get(id) : undefined;
      if (c === undefined || (isLive(c.state) && clock() - syncedAt > maxAgeMs)) {
        stale = true;
        break;
      }
    }
    if (!stale) return;
    if (!syncing) {
      const started = clock();
      syncing = table
        .syncToEnd()
        .then(() => {
          syncedAt = started;
        })
        .finally(() => {
          syncing = null;
        });
    }
    await syncing;
  };
}
