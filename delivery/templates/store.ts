// The managed templates store: every version and publication lives on the compacted
// templates topic (one partition), and every process that renders (delivery workers, the API,
// the demo) materialises it from the beginning into memory before it serves, then keeps
// following it (the platform's topic view, platform/topic-view.ts), so a publish reaches every
// worker as fast as a record travels. A write answers only once this process's own view holds
// it (read your writes).
//
// Two writers never make the same version number: numbers come from a counter per template
// that is never below the highest version stored (Redis in production, so every API instance
// shares it; one process's memory in the demo). Kafka alone could not do it: compaction keeps
// the last record of a key, so a second writer of `v:<name>:3` would silently replace the
// first. Publication changes are read-modify-write of the whole map, so they run under a lock
// per template, after the view has caught up with the topic's end.
import type { Logger } from 'pino';
import type { Publisher } from '../../platform/bus.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import type { Channel, Topics } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import { createMemoryLocks, createRedisLocks } from '../../platform/locks.ts';
import type { Registry } from '../../platform/metrics.ts';
import type { RedisDeps } from '../../platform/redis.ts';
import {
  createTopicView,
  type TopicViewCodec,
  type TopicViewDeps,
} from '../../platform/topic-view.ts';
import { script } from '../lua.ts';
import {
  ANY_LOCALE,
  FILES_AUTHOR,
  applyPublish,
  applyRollback,
  contentHash,
  emptyPublication,
  isFilesAuthor,
  parseRecordKey,
  publicationKey,
  versionChannels,
  versionKey,
  type EntryChange,
  type Publication,
  type TemplateVersion,
  type VersionInfo,
} from './versions.ts';

/** What the instances writing templates agree on through a shared store. */
export interface TemplateCoordinator {
  /** A version number no other writer gets: one more than the highest handed out or `stored`. */
  nextVersion(name: string, stored: number): Promise<number>;
  /** True for one caller per (name, hash) within `ttlMs`: the one that seeds these files. */
  claimSeed(name: string, hash: string, ttlMs: number): Promise<boolean>;
  /** Runs `fn` while no other writer changes this template's publication. */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/** One process's coordination: the embedded demo and unit tests. */
export function createMemoryCoordinator(): TemplateCoordinator {
  const counters = new Map<string, number>();
  const claims = new Map<string, number>();
  const locks = createMemoryLocks();
  return {
    async nextVersion(name, stored) {
      const n = Math.max(counters.get(name) ?? 0, stored) + 1;
      counters.set(name, n);
      return n;
    },
    async claimSeed(name, hash, ttlMs) {
      const key = `${name}\u0000${hash}`;
      const until = claims.get(key);
      if (until !== undefined && until > Date.now()) return false;
      claims.set(key, Date.now() + ttlMs);
      return true;
    },
    withLock: (name, fn) => locks.withLock(name, fn),
  };
}

const NEXT_VERSION = script(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local stored = tonumber(ARGV[1])
if n < stored then n = stored end
n = n + 1
redis.call('SET', KEYS[1], n)
return n
`);

/** Coordination through the product's Redis, shared by every instance. */
export function createRedisCoordinator(
  { redis, keys, durable }: RedisDeps,
  opts: { lockMs?: number; lockWaitMs?: number } = {},
): TemplateCoordinator {
  const locks = createRedisLocks(
    { redis, keys },
    {
      prefix: 'tpl:lock:',
      what: 'template',
      pollMs: 50,
      ...(opts.lockMs !== undefined ? { lockMs: opts.lockMs } : {}),
      ...(opts.lockWaitMs !== undefined ? { waitMs: opts.lockWaitMs } : {}),
    },
  );
  return {
    async nextVersion(name, stored) {
      const n = Number(await NEXT_VERSION(redis, [keys.global(`tpl:version:${name}`)], [stored]));
      // A counter lost in a Redis crash would hand the number out again (the stored floor
      // covers only versions already on the topic).
      await durable?.();
      return n;
    },
    async claimSeed(name, hash, ttlMs) {
      const ok = await redis.set(keys.global(`tpl:seed:${name}:${hash}`), '1', 'PX', ttlMs, 'NX');
      return ok === 'OK';
    },
    withLock: (name, fn) => locks.withLock(name, fn),
  };
}

export interface TemplateStoreConfig {
  topics: Topics;
  /** A group of this process alone: every process reads the whole topic (default: a new one, see topicViewGroup). */
  groupId?: string;
  /** Longest wait for a write (or another instance's) to show in this process's view (default 30 s). */
  syncTimeoutMs?: number;
  /** Longest wait for the first read of the whole topic at start (default 120 s: joining a group may take a while). */
  startTimeoutMs?: number;
}

export interface TemplateStoreDeps {
  bus: TopicViewDeps['bus'];
  publisher: Publisher;
  coordinator: TemplateCoordinator;
  logger: Logger;
  registry?: Registry;
  now?: () => number;
}

export interface SaveRequest {
  name: string;
  files: Record<string, string>;
  author: string;
  message: string;
}

export interface PublicationChange {
  name: string;
  /** The publication map before and after (channel -> locale -> version). */
  before: Publication['channels'];
  after: Publication['channels'];
  changes: EntryChange[];
}

export interface TemplateStore {
  /** Reads the topic from the beginning; resolves once the view holds every record that was on it. */
  start(): Promise<void>;
  stop(): Promise<void>;
  health(): { ok: boolean; caughtUp: boolean; stalled: number };
  /** Names of the templates with at least one version. */
  names(): string[];
  /** Every version of a template without files, oldest first. */
  versions(name: string): VersionInfo[];
  version(name: string, version: number): TemplateVersion | undefined;
  latest(name: string): TemplateVersion | undefined;
  publication(name: string): Publication | undefined;
  /** Stores a new version; resolves with it once this process's view has it. */
  save(req: SaveRequest): Promise<TemplateVersion>;
  /** Publishes a version for channels (default: every channel it has) and locales (default `*`). */
  publish(req: {
    name: string;
    version: number;
    channels?: readonly Channel[];
    locales?: readonly string[];
    actor: string;
  }): Promise<PublicationChange>;
  /** Puts each named entry back at the version it had before (default: every channel, locale `*`). */
  rollback(req: {
    name: string;
    channels?: readonly Channel[];
    locales?: readonly string[];
    actor: string;
  }): Promise<PublicationChange>;
  /**
   * Makes each folder's files a version when this content was never a files version before
   * (a file changed in git), and publishes it when nothing is published yet for the template,
   * or always with `publishChanged`. Safe to run on every start of every instance at once.
   */
  seed(
    folders: readonly { name: string; files: Record<string, string> }[],
    opts: { publishChanged: boolean },
  ): Promise<{ created: VersionInfo[]; published: string[] }>;
  /** Whether seeding would pass these files by: they are the latest version, or were a files version before. */
  seeded(name: string, hash: string): boolean;
}

/** A record of the templates topic: its key says which (see versions.ts). */
type TemplateRecord =
  | { kind: 'version'; value: TemplateVersion }
  | { kind: 'publication'; value: Publication };

const isRecord = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

const templateCodec: TopicViewCodec<TemplateRecord> = {
  encode: (r) => Buffer.from(JSON.stringify(r.value), 'utf8'),
  decode(rawKey, value) {
    const key = parseRecordKey(rawKey);
    if (!key) return { ok: false, reason: 'unknown key' };
    let body: unknown;
    try {
      body = JSON.parse(value.toString('utf8'));
    } catch {
      return { ok: false, reason: 'not JSON' };
    }
    if (!isRecord(body) || body.name !== key.name) return { ok: false, reason: 'bad shape' };
    if (key.kind === 'version') {
      const files = body.files;
      if (
        body.version !== key.version ||
        !isRecord(files) ||
        !Object.values(files).every((f) => typeof f === 'string') ||
        typeof body.hash !== 'string' ||
        typeof body.author !== 'string'
      )
        return { ok: false, reason: 'bad version record' };
      return { ok: true, value: { kind: 'version', value: body as unknown as TemplateVersion } };
    }
    if (typeof body.rev !== 'number' || !isRecord(body.channels) || !isRecord(body.history))
      return { ok: false, reason: 'bad publication record' };
    return { ok: true, value: { kind: 'publication', value: body as unknown as Publication } };
  },
};

export function createTemplateStore(
  config: TemplateStoreConfig,
  deps: TemplateStoreDeps,
): TemplateStore {
  const topic = config.topics.templates;
  const log = deps.logger.child({ component: 'template-store', topic });
  const now = deps.now ?? Date.now;
  const view = createTopicView<TemplateRecord>(
    {
      topic,
      dlqTopic: config.topics.dlq,
      name: 'template-view',
      codec: templateCodec,
      spec: internalTopicSpecs(config.topics, 1).find((s) => s.topic === topic)!,
      ...(config.groupId !== undefined ? { groupId: config.groupId } : {}),
      ...(config.syncTimeoutMs !== undefined ? { syncTimeoutMs: config.syncTimeoutMs } : {}),
      ...(config.startTimeoutMs !== undefined ? { startTimeoutMs: config.startTimeoutMs } : {}),
      supersedes(next, current) {
        if (next.kind === 'version' && current.kind === 'version') {
          // Versions are immutable: a second record of a number (a replay of the same write) is
          // the same content; anything else would be a bug of the numbering, kept visible.
          if (next.value.hash === current.value.hash) return true;
          log.error(
            {
              template: next.value.name,
              version: next.value.version,
              kept: current.value.hash,
              refused: next.value.hash,
            },
            'a second, different record of a template version; keeping the first',
          );
          return false;
        }
        // A replayed older revision never undoes a newer one.
        if (next.kind === 'publication' && current.kind === 'publication')
          return next.value.rev >= current.value.rev;
        return true;
      },
    },
    deps,
  );
  // Versions by template, kept beside the view for the reads by name (latest, the list).
  const versions = new Map<string, Map<number, TemplateVersion>>();
  view.onChange((key, record) => {
    const parsed = parseRecordKey(key);
    if (parsed?.kind !== 'version') return;
    if (record?.kind === 'version') {
      const byNumber = versions.get(parsed.name) ?? new Map<number, TemplateVersion>();
      versions.set(parsed.name, byNumber);
      byNumber.set(parsed.version, record.value);
    } else {
      // A tombstone (written by hand): the version is gone.
      versions.get(parsed.name)?.delete(parsed.version);
      if (versions.get(parsed.name)?.size === 0) versions.delete(parsed.name);
    }
  });
  const publicationOf = (name: string): Publication | undefined => {
    const r = view.get(publicationKey(name));
    return r?.kind === 'publication' ? r.value : undefined;
  };

  const maxStored = (name: string): number => {
    let max = 0;
    for (const n of versions.get(name)?.keys() ?? []) max = Math.max(max, n);
    return max;
  };

  const latest = (name: string): TemplateVersion | undefined =>
    versions.get(name)?.get(maxStored(name));

  async function save(req: SaveRequest): Promise<TemplateVersion> {
    const number = await deps.coordinator.nextVersion(req.name, maxStored(req.name));
    const version: TemplateVersion = {
      name: req.name,
      version: number,
      author: req.author,
      message: req.message,
      createdAt: new Date(now()).toISOString(),
      hash: contentHash(req.files),
      files: { ...req.files },
    };
    await view.put(
      versionKey(req.name, number),
      { kind: 'version', value: version },
      `version ${number} of "${req.name}"`,
    );
    log.info({ template: req.name, version: number, author: req.author }, 'template version saved');
    return version;
  }

  async function changePublication(
    name: string,
    actor: string,
    change: (pub: Publication) => { next: Publication; changes: EntryChange[] },
  ): Promise<PublicationChange> {
    return deps.coordinator.withLock(name, async () => {
      // Another instance's change may still be on its way to this view.
      await view.syncToEnd();
      const before = publicationOf(name) ?? emptyPublication(name);
      const { next, changes } = change(before);
      if (changes.length > 0) {
        await view.put(
          publicationKey(name),
          { kind: 'publication', value: next },
          `the publication of "${name}"`,
        );
        log.info({ template: name, actor, changes }, 'template publication changed');
      }
      return {
        name,
        before: before.channels,
        after: (publicationOf(name) ?? before).channels,
        changes,
      };
    });
  }

  const notFound = (message: string) => new LifecycleError(ErrorCodes.NotFound, message);

  async function publish(req: {
    name: string;
    version: number;
    channels?: readonly Channel[];
    locales?: readonly string[];
    actor: string;
  }): Promise<PublicationChange> {
    const v = versions.get(req.name)?.get(req.version);
    if (!v)
      throw notFound(
        versions.has(req.name)
          ? `template "${req.name}" has no version ${req.version} (latest: ${maxStored(req.name)})`
          : `no template "${req.name}"`,
      );
    const has = versionChannels(v.files);
    const channels = req.channels ?? has;
    const missing = channels.filter((c) => !has.includes(c));
    if (missing.length > 0)
      throw new LifecycleError(
        ErrorCodes.TemplateInvalid,
        `version ${req.version} of "${req.name}" has no content for ${missing.join(', ')} (it has ${has.join(', ')}); publish it for those channels only, or save a version with those files`,
        { details: { field: 'channels' } },
      );
    const locales = req.locales ?? [ANY_LOCALE];
    const at = new Date(now()).toISOString();
    return changePublication(req.name, req.actor, (pub) =>
      applyPublish(pub, req.version, channels, locales, req.actor, at),
    );
  }

  async function rollback(req: {
    name: string;
    channels?: readonly Channel[];
    locales?: readonly string[];
    actor: string;
  }): Promise<PublicationChange> {
    if (!versions.has(req.name)) throw notFound(`no template "${req.name}"`);
    const at = new Date(now()).toISOString();
    let missing: { channel: Channel; locale: string }[] = [];
    const result = await changePublication(req.name, req.actor, (pub) => {
      const channels = req.channels ?? (Object.keys(pub.channels) as Channel[]);
      const r = applyRollback(pub, channels, req.locales ?? [ANY_LOCALE], req.actor, at);
      missing = r.missing;
      return r;
    });
    if (result.changes.length === 0)
      throw new LifecycleError(
        ErrorCodes.Conflict,
        `nothing to roll back for "${req.name}"${missing.length > 0 ? `: ${missing.map((m) => `${m.channel}/${m.locale}`).join(', ')} ${missing.length === 1 ? 'has' : 'have'} no earlier published version` : ': nothing is published'}`,
      );
    return result;
  }

  // Content the folder had before is not made again: an instance still on an older
  // checkout, restarting, must not publish old files over newer ones.
  const seeded = (name: string, hash: string): boolean =>
    latest(name)?.hash === hash ||
    [...(versions.get(name)?.values() ?? [])].some(
      (v) => v.hash === hash && isFilesAuthor(v.author),
    );

  async function seed(
    folders: readonly { name: string; files: Record<string, string> }[],
    opts: { publishChanged: boolean },
  ): Promise<{ created: VersionInfo[]; published: string[] }> {
    await view.syncToEnd();
    const created: VersionInfo[] = [];
    const published: string[] = [];
    for (const { name, files } of folders) {
      const hash = contentHash(files);
      const seen = () => seeded(name, hash);
      let made: TemplateVersion | undefined;
      if (!seen() && (await deps.coordinator.claimSeed(name, hash, 60_000))) {
        // The claim of an earlier start may have expired after its version was written.
        await view.syncToEnd();
        if (!seen()) {
          made = await save({ name, files, author: FILES_AUTHOR, message: 'from the templates folder' });
          created.push(infoOf(made));
        }
      }
      const pub = publicationOf(name);
      const nothingPublished = !pub || Object.keys(pub.channels).length === 0;
      const target = made && opts.publishChanged ? made : nothingPublished ? latest(name) : undefined;
      if (!target) continue;
      const change = await changePublication(name, FILES_AUTHOR, (current) => {
        // Under the lock: another instance may have published meanwhile.
        if (!made && Object.keys(current.channels).length > 0) return { next: current, changes: [] };
        return applyPublish(
          current,
          target.version,
          versionChannels(target.files),
          [ANY_LOCALE],
          FILES_AUTHOR,
          new Date(now()).toISOString(),
        );
      });
      if (change.changes.length > 0) published.push(name);
    }
    if (created.length > 0 || published.length > 0)
      log.info(
        { created: created.map((v) => `${v.name}@${v.version}`), published },
        'templates folder seeded into the store',
      );
    return { created, published };
  }

  return {
    async start() {
      await view.start();
      log.info(
        { templates: versions.size, records: view.size() },
        'templates store read from the topic',
      );
    },
    stop: () => view.stop(),
    health() {
      const { ok, caughtUp, stalled } = view.health();
      return { ok, caughtUp, stalled };
    },
    names: () => [...versions.keys()].sort(),
    versions: (name) =>
      [...(versions.get(name)?.values() ?? [])].sort((a, b) => a.version - b.version).map(infoOf),
    version: (name, n) => versions.get(name)?.get(n),
    latest,
    publication: publicationOf,
    save,
    publish,
    rollback,
    seed,
    seeded,
  };
}

export function infoOf(v: TemplateVersion): VersionInfo {
  return {
    name: v.name,
    version: v.version,
    author: v.author,
    message: v.message,
    createdAt: v.createdAt,
    hash: v.hash,
  };
}
