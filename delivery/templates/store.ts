// The managed templates store: every version and publication lives on the compacted
// templates topic (one partition), and every process that renders (delivery workers, the API,
// the demo) materialises it from the beginning into memory before it serves, then keeps
// following it, so a publish reaches every worker as fast as a record travels. A write answers
// only once this process's own view holds it (read your writes).
//
// Two writers never make the same version number: numbers come from a counter per template
// that is never below the highest version stored (Redis in production, so every API instance
// shares it; one process's memory in the demo). Kafka alone could not do it: compaction keeps
// the last record of a key, so a second writer of `v:<name>:3` would silently replace the
// first. Publication changes are read-modify-write of the whole map, so they run under a lock
// per template, after the view has caught up with the topic's end.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Bus, IncomingMessage, Publisher } from '../../platform/bus.ts';
import { internalTopicSpecs } from '../../platform/bus.ts';
import { createConsumeLoop, type ConsumeLoop } from '../../platform/consume.ts';
import type { Channel, Topics } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import { createMetricsRegistry, type Registry } from '../../platform/metrics.ts';
import type { RedisDeps } from '../../platform/redis.ts';
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
  const locks = new Map<string, Promise<unknown>>();
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
    async withLock(name, fn) {
      const prev = locks.get(name) ?? Promise.resolve();
      const run = prev.catch(() => undefined).then(fn);
      locks.set(name, run);
      try {
        return await run;
      } finally {
        if (locks.get(name) === run) locks.delete(name);
      }
    },
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
const RELEASE = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

/** Coordination through the product's Redis, shared by every instance. */
export function createRedisCoordinator(
  { redis, keys, durable }: RedisDeps,
  opts: { lockMs?: number; lockWaitMs?: number } = {},
): TemplateCoordinator {
  const lockMs = opts.lockMs ?? 30_000;
  const lockWaitMs = opts.lockWaitMs ?? 20_000;
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
    async withLock(name, fn) {
      const key = keys.global(`tpl:lock:${name}`);
      const token = randomUUID();
      const deadline = Date.now() + lockWaitMs;
      while ((await redis.set(key, token, 'PX', lockMs, 'NX')) !== 'OK') {
        if (Date.now() > deadline)
          throw new LifecycleError(
            ErrorCodes.Unavailable,
            `another change of template "${name}" is still in progress; retry in a moment`,
            { retriable: true },
          );
        await new Promise((r) => setTimeout(r, 50));
      }
      try {
        return await fn();
      } finally {
        await RELEASE(redis, [key], [token]).catch(() => undefined);
      }
    },
  };
}

export interface TemplateStoreConfig {
  topics: Topics;
  /** A group of this process alone: every process reads the whole topic (see templateViewGroup). */
  groupId: string;
  /** Longest wait for a write (or another instance's) to show in this process's view (default 30 s). */
  syncTimeoutMs?: number;
  /** Longest wait for the first read of the whole topic at start (default 120 s: joining a group may take a while). */
  startTimeoutMs?: number;
}

export interface TemplateStoreDeps {
  bus: Pick<Bus, 'consumer' | 'endOffsets' | 'ensureTopics'>;
  publisher: Publisher;
  coordinator: TemplateCoordinator;
  logger: Logger;
  registry?: Registry;
  now?: () => number;
}

/** The consumer group of one process's view: its own, so it reads every record of the topic. */
export const templateViewGroup = (topic: string): string =>
  `${topic}-view-${randomUUID().slice(0, 12)}`;

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

type Decoded =
  | { kind: 'version'; value: TemplateVersion }
  | { kind: 'publication'; value: Publication }
  | { kind: 'unknown'; reason: string };

const WRITE_ID_HEADER = 'lc-write-id';

const isRecord = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

function decodeRecord(message: IncomingMessage): Decoded {
  const key = parseRecordKey(message.key);
  if (!key) return { kind: 'unknown', reason: 'unknown key' };
  if (!message.value) return { kind: 'unknown', reason: 'empty value' };
  let body: unknown;
  try {
    body = JSON.parse(message.value.toString('utf8'));
  } catch {
    return { kind: 'unknown', reason: 'not JSON' };
  }
  if (!isRecord(body) || body.name !== key.name) return { kind: 'unknown', reason: 'bad shape' };
  if (key.kind === 'version') {
    const files = body.files;
    if (
      body.version !== key.version ||
      !isRecord(files) ||
      !Object.values(files).every((f) => typeof f === 'string') ||
      typeof body.hash !== 'string' ||
      typeof body.author !== 'string'
    )
      return { kind: 'unknown', reason: 'bad version record' };
    return { kind: 'version', value: body as unknown as TemplateVersion };
  }
  if (typeof body.rev !== 'number' || !isRecord(body.channels) || !isRecord(body.history))
    return { kind: 'unknown', reason: 'bad publication record' };
  return { kind: 'publication', value: body as unknown as Publication };
}

export function createTemplateStore(
  config: TemplateStoreConfig,
  deps: TemplateStoreDeps,
): TemplateStore {
  const topic = config.topics.templates;
  const log = deps.logger.child({ component: 'template-store', topic });
  const now = deps.now ?? Date.now;
  const syncTimeoutMs = config.syncTimeoutMs ?? 30_000;
  const versions = new Map<string, Map<number, TemplateVersion>>();
  const publications = new Map<string, Publication>();
  const writeWaiters = new Map<string, () => void>();
  const offsetWaiters = new Set<{ target: bigint; resolve: () => void }>();
  let applied = 0n;
  let caughtUp = false;
  let loop: ConsumeLoop | null = null;

  function apply(record: Decoded, message: IncomingMessage): void {
    if (record.kind === 'version') {
      const v = record.value;
      const byNumber = versions.get(v.name) ?? new Map<number, TemplateVersion>();
      versions.set(v.name, byNumber);
      const had = byNumber.get(v.version);
      // Versions are immutable: a second record of a number (a replay of the same write) is
      // the same content; anything else would be a bug of the numbering, kept visible.
      if (had && had.hash !== v.hash)
        log.error(
          { template: v.name, version: v.version, kept: had.hash, refused: v.hash },
          'a second, different record of a template version; keeping the first',
        );
      else byNumber.set(v.version, v);
    } else if (record.kind === 'publication') {
      const prev = publications.get(record.value.name);
      // A replayed older revision never undoes a newer one.
      if (!prev || record.value.rev >= prev.rev) publications.set(record.value.name, record.value);
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

  const timeout = <T>(
    p: Promise<T>,
    what: string,
    cancel: () => void,
    ms = syncTimeoutMs,
  ): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        cancel();
        reject(
          new LifecycleError(
            ErrorCodes.Unavailable,
            `${what} did not show in this process's view of ${topic} within ${ms} ms; check that Kafka is reachable and retry`,
            { retriable: true },
          ),
        );
      }, ms);
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

  /** Resolves once the view has applied every record the topic held when called. */
  async function syncToEnd(ms = syncTimeoutMs): Promise<void> {
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
      ms,
    );
  }

  async function write(key: string, value: unknown, what: string): Promise<void> {
    const writeId = randomUUID();
    const seen = new Promise<void>((resolve) => writeWaiters.set(writeId, resolve));
    await deps.publisher.publish(topic, [
      {
        key,
        value: Buffer.from(JSON.stringify(value), 'utf8'),
        headers: { [WRITE_ID_HEADER]: writeId },
      },
    ]);
    await timeout(seen, what, () => writeWaiters.delete(writeId));
  }

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
    await write(versionKey(req.name, number), version, `version ${number} of "${req.name}"`);
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
      await syncToEnd();
      const before = publications.get(name) ?? emptyPublication(name);
      const { next, changes } = change(before);
      if (changes.length > 0) {
        await write(publicationKey(name), next, `the publication of "${name}"`);
        log.info({ template: name, actor, changes }, 'template publication changed');
      }
      return {
        name,
        before: before.channels,
        after: (publications.get(name) ?? before).channels,
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
    await syncToEnd();
    const created: VersionInfo[] = [];
    const published: string[] = [];
    for (const { name, files } of folders) {
      const hash = contentHash(files);
      const seen = () => seeded(name, hash);
      let made: TemplateVersion | undefined;
      if (!seen() && (await deps.coordinator.claimSeed(name, hash, 60_000))) {
        // The claim of an earlier start may have expired after its version was written.
        await syncToEnd();
        if (!seen()) {
          made = await save({ name, files, author: FILES_AUTHOR, message: 'from the templates folder' });
          created.push(infoOf(made));
        }
      }
      const pub = publications.get(name);
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
      await deps.bus.ensureTopics(
        internalTopicSpecs(config.topics, 1).filter((s) => s.topic === topic),
      );
      loop = createConsumeLoop<Decoded>(
        {
          name: 'template-view',
          groupId: config.groupId,
          topics: [topic],
          fromBeginning: true,
          dlqTopic: config.topics.dlq,
          // Every instance reads every record: a record this version cannot read is passed
          // by here (and logged), not dead-lettered once per instance.
          decode: decodeRecord,
          async handle(records, scope) {
            for (const { value, message } of records) {
              if (value.kind === 'unknown') {
                log.warn(
                  { key: message.key, offset: message.offset, reason: value.reason },
                  'templates topic record not understood; skipped',
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
      await syncToEnd(config.startTimeoutMs ?? 120_000);
      caughtUp = true;
      log.info(
        { templates: versions.size, publications: publications.size },
        'templates store read from the topic',
      );
    },
    async stop() {
      await loop?.stop();
      loop = null;
    },
    health() {
      const stalled = loop?.stalled().length ?? 0;
      return { ok: caughtUp && stalled === 0, caughtUp, stalled };
    },
    names: () => [...versions.keys()].sort(),
    versions: (name) =>
      [...(versions.get(name)?.values() ?? [])].sort((a, b) => a.version - b.version).map(infoOf),
    version: (name, n) => versions.get(name)?.get(n),
    latest,
    publication: (name) => publications.get(name),
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
