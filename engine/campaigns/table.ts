// Campaign definitions live on the compacted campaigns topic (one partition, key = campaign
// id, value = the whole campaign with its state), materialised in memory by every process
// that needs them (the API, the scheduler, the engine) through the platform's topic view
// (platform/topic-view.ts: read from the beginning at start, then followed; a write answers
// once this process's own view holds it). A change is a read-modify-write under a lock per
// campaign taken after this view caught up with the topic's end, so it is made on the latest
// state. Compaction keeps the last record of a key, which is the latest revision because
// writers of one campaign take turns.
import type { Logger } from 'pino';
import type { Publisher } from '../../platform/bus.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import type { Topics } from '../../platform/contracts.ts';
import { createMemoryLocks, createRedisLocks, type NamedLocks } from '../../platform/locks.ts';
import type { Registry } from '../../platform/metrics.ts';
import type { RedisDeps } from '../../platform/redis.ts';
import {
  createTopicView,
  type TopicViewCodec,
  type TopicViewDeps,
} from '../../platform/topic-view.ts';
import type { NormalisedEvent } from '../../platform/contracts.ts';
import { CAMPAIGN_EVENT } from '../core/campaign.ts';
import { campaignRefusal, isLive, type Campaign } from './model.ts';

/** Writers of one campaign take turns through this (Redis in production, memory in the demo). */
export type CampaignLocks = NamedLocks;

export const createMemoryCampaignLocks = (): CampaignLocks => createMemoryLocks();

export const createRedisCampaignLocks = (
  deps: Pick<RedisDeps, 'redis' | 'keys'>,
  opts: { lockMs?: number; waitMs?: number } = {},
): CampaignLocks => createRedisLocks(deps, { prefix: 'campaign:lock:', what: 'campaign', ...opts });

export interface CampaignTableConfig {
  topics: Topics;
  /** A group of this process alone, so it reads every record (default: a new one, see topicViewGroup). */
  groupId?: string;
  /** Longest wait for a write to show in this view, and for a catch-up (default 30 s). */
  syncTimeoutMs?: number;
  /** Create the topic at start (default true). */
  ensureTopic?: boolean;
}

export interface CampaignTableDeps {
  bus: TopicViewDeps['bus'];
  publisher: Publisher;
  /** Needed to change campaigns; a process that only reads them (the engine) has none. */
  locks?: CampaignLocks;
  logger: Logger;
  registry?: Registry;
}

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

const campaignCodec: TopicViewCodec<Campaign> = {
  encode: (c) => Buffer.from(JSON.stringify(c), 'utf8'),
  decode(key, value) {
    let body: unknown;
    try {
      body = JSON.parse(value.toString('utf8'));
    } catch {
      return { ok: false, reason: 'not JSON' };
    }
    const refusal = campaignRefusal(body);
    if (refusal !== null) return { ok: false, reason: refusal };
    const campaign = body as Campaign;
    if (campaign.id !== key) return { ok: false, reason: 'key is not the campaign id' };
    return { ok: true, value: campaign };
  },
};

export function createCampaignTable(
  config: CampaignTableConfig,
  deps: CampaignTableDeps,
): CampaignTable {
  const topic = config.topics.campaigns;
  const log = deps.logger.child({ component: 'campaigns', topic });
  const view = createTopicView<Campaign>(
    {
      topic,
      dlqTopic: config.topics.dlq,
      name: 'campaign-view',
      codec: campaignCodec,
      ...(config.ensureTopic !== false
        ? { spec: internalTopicSpecs(config.topics, 1).find((s) => s.topic === topic)! }
        : {}),
      ...(config.groupId !== undefined ? { groupId: config.groupId } : {}),
      ...(config.syncTimeoutMs !== undefined ? { syncTimeoutMs: config.syncTimeoutMs } : {}),
      // A replayed older revision never undoes a newer one.
      supersedes: (next, current) => next.revision >= current.revision,
    },
    deps,
  );

  return {
    async start() {
      await view.start();
      log.info({ campaigns: view.size() }, 'campaigns read from the topic');
    },
    stop: () => view.stop(),
    health() {
      const { ok, caughtUp, entries, stalled } = view.health();
      return { ok, caughtUp, campaigns: entries, stalled };
    },
    get: (id) => view.get(id),
    list: () =>
      [...view.entries()]
        .map(([, c]) => c)
        .sort((a, b) =>
          a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? -1 : 1,
        ),
    version: () => view.version(),
    syncToEnd: () => view.syncToEnd(),
    change(id, fn) {
      if (!deps.locks) throw new Error('this view of the campaigns is read-only (no locks given)');
      return deps.locks.withLock(id, async () => {
        // Another process's change may still be on its way to this view.
        await view.syncToEnd();
        const before = view.get(id);
        const next = await fn(before);
        if (next === null) return { before, after: before, changed: false };
        const after: Campaign = { ...next, revision: (before?.revision ?? 0) + 1 };
        await view.put(id, after, `campaign "${id}"`);
        return { before, after: view.get(id) ?? after, changed: true };
      });
    },
    onChange(listener) {
      return view.onChange((_id, campaign) => {
        if (campaign) listener(campaign);
      });
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
