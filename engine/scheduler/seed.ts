// Seeds the user directory from the engine's user state in Redis. The directory follows the
// events topic, but a topic keeps days, not years: users who were quiet for longer than its
// retention exist only in the engine's state. The seed files each of them (zone from the
// stored `timezone` trait) unless the directory already has them, so it can run beside the
// directory consumer: whatever the consumer filed from a newer event wins. A user deleted
// while the seed runs may be filed again; the engine answers that user's occurrences with
// `no-user`, so the cost is a few events, not a send.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { decodeTag, type KeySpace } from '../../platform/keys.ts';
import { deserializeState } from '../core/state.ts';
import type { UserDirectory } from './directory.ts';
import { changeFor, type DirectoryChange } from './plan.ts';

const STATE_SUFFIX = '}:state';

/** Redis glob special characters in the key prefix matched literally. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export interface SeedResult {
  scanned: number;
  filed: number;
  skipped: number;
}

/**
 * Scans the engine's `<prefix>{<userId>}:state` hashes and files every user with state.
 * Runs once per deployment (a marker key remembers it finished); returns null when it already ran.
 */
export async function seedDirectoryFromEngineState(
  deps: { redis: Redis; keys: KeySpace; directory: UserDirectory; logger: Logger },
  opts: { scanCount?: number; force?: boolean } = {},
): Promise<SeedResult | null> {
  const { redis, keys, directory } = deps;
  const marker = keys.global('sched:directory-seeded');
  if (!opts.force && (await redis.exists(marker)) === 1) return null;
  const started = Date.now();
  const probe = keys.user('', 'state');
  const head = probe.slice(0, probe.length - STATE_SUFFIX.length); // `<prefix>{`
  const result: SeedResult = { scanned: 0, filed: 0, skipped: 0 };
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(
      cursor,
      'MATCH',
      `${globEscape(head)}*${STATE_SUFFIX}`,
      'COUNT',
      opts.scanCount ?? 1000,
    );
    cursor = next;
    const stateKeys = found.filter((k) => k.startsWith(head) && k.endsWith(STATE_SUFFIX));
    if (stateKeys.length === 0) continue;
    const pipeline = redis.pipeline();
    for (const k of stateKeys) pipeline.hget(k, 's');
    const replies = (await pipeline.exec()) ?? [];
    const changes = new Map<string, DirectoryChange>();
    stateKeys.forEach((key, i) => {
      result.scanned++;
      const [err, stored] = replies[i] ?? [null, null];
      // Tombstones of deleted users keep only the fence, no state.
      if (err || typeof stored !== 'string') return void result.skipped++;
      const userId = decodeTag(key.slice(head.length, key.length - STATE_SUFFIX.length));
      try {
        const traits = deserializeState(stored).traits;
        const c = changeFor({
          id: 'seed',
          userId,
          type: 'identify',
          ts: 0,
          receivedAt: 0,
          source: 'scheduler',
          properties: {},
          traits: { timezone: traits.timezone ?? null },
        });
        changes.set(userId, { op: 'add', zone: c?.op === 'set' ? c.zone : 'UTC' });
      } catch {
        result.skipped++;
      }
    });
    // These users predate the scheduler: their zones count as known since ever.
    if (changes.size > 0) result.filed += await directory.apply(changes, 0);
  } while (cursor !== '0');
  await redis.set(marker, new Date().toISOString());
  deps.logger.info(
    { component: 'scheduler', ...result, ms: Date.now() - started },
    'user directory seeded from the engine state',
  );
  return result;
}
