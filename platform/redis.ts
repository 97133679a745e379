// Redis client for the state store, timers and delivery bookkeeping (ioredis). Keys come
// from the KeySpace so every key of one user shares the `{userId}` hash tag.
//
// Durability. The engine and delivery commit a Kafka offset (or answer an unsubscribe)
// once the Redis writes it produced were acknowledged. An acknowledgement is only worth
// that when the write survives a Redis crash: with `appendfsync everysec` a crash loses up
// to a second of acknowledged writes (user state, rule history such as `oncePerUser`,
// timers, claims, unsubscribes) whose offsets are already committed, so a replay sends a
// once-per-user rule twice or never sends a delayed one. The decision of how a process
// gets that guarantee lives here: `appendfsync always` (every write is on disk before its
// reply, nothing to wait for), or WAITAOF on Redis >= 7.2 (wait for this client's writes
// to be on disk before the commit). `openRedis` probes the server at start and refuses
// to run without either, unless LC_REDIS_DURABILITY accepts the risk.
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { ErrorCodes, LifecycleError } from './errors.ts';
import { createKeySpace, type KeySpace } from './keys.ts';

export { Redis };

export interface RedisDeps {
  redis: Redis;
  keys: KeySpace;
  /**
   * Resolves once every write this client made before the call is on the server's disk.
   * Set by `openRedis`; absent on clients built with `createRedis` alone (tests, tools),
   * which then do not wait.
   */
  durable?: Durable;
}

/** Resolves once the writes made before the call survive a Redis crash. */
export type Durable = () => Promise<void>;

export function createRedis(
  config: Pick<Config['redis'], 'url' | 'keyPrefix'>,
  logger: Logger,
): RedisDeps {
  const redis = new Redis(config.url, {
    lazyConnect: false,
    maxRetriesPerRequest: 5,
    enableAutoPipelining: true,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
  redis.on('error', (err: Error) =>
    logger.warn({ component: 'redis', err: err.message }, 'redis connection error'),
  );
  return { redis, keys: createKeySpace(config.keyPrefix) };
}

export type DurabilityMode = Config['redis']['durability'];

/**
 * How acknowledged writes survive a crash: `fsync-always` (the server fsyncs every write
 * before replying), `waitaof` (`durable()` waits with WAITAOF), `unverified` (the server
 * would not say: CONFIG GET refused and no WAITAOF), `none` (a crash may lose the last
 * second; accepted by configuration or in development).
 */
export type DurabilityGuarantee = 'fsync-always' | 'waitaof' | 'unverified' | 'none';

/** What the server says about itself; null where it would not tell. */
export interface RedisFacts {
  version: string | null;
  aofEnabled: boolean | null;
  appendfsync: string | null;
  maxmemoryPolicy: string | null;
}

export interface DurabilityDecision {
  guarantee: DurabilityGuarantee;
  /** Why the process must not start (empty: it may). */
  problems: string[];
  warnings: string[];
}

/** WAITAOF exists from Redis 7.2 on. */
export function supportsWaitAof(version: string | null): boolean {
  const m = /^(\d+)\.(\d+)/.exec(version ?? '');
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 7 || (major === 7 && minor >= 2);
}

const ACCEPT = 'or accept the risk with LC_REDIS_DURABILITY=none';

/**
 * The durability a process gets from a server with these facts under `mode`, and whether
 * it may start. Pure, so every branch is tested without a server.
 */
export function decideDurability(
  facts: RedisFacts,
  mode: DurabilityMode,
  env: Config['env'],
): DurabilityDecision {
  const problems: string[] = [];
  const warnings: string[] = [];
  // In development the default warns instead of refusing: a laptop's Redis is disposable.
  const lenient = mode === 'none' || (mode === 'auto' && env === 'development');
  const refuse = (why: string) => (lenient ? warnings : problems).push(why);
  const version = facts.version ?? 'of unknown version';
  const aofOff = facts.aofEnabled === false;
  const fsyncAlways = facts.aofEnabled !== false && facts.appendfsync === 'always';
  const waitAof = supportsWaitAof(facts.version) && facts.aofEnabled !== false;
  const appendonly = aofOff ? '`appendonly no`' : `\`appendfsync ${facts.appendfsync ?? '?'}\``;
  const fixFsync =
    'set `appendonly yes` and `appendfsync always` in redis.conf (on a running server: CONFIG SET appendonly yes, CONFIG SET appendfsync always, CONFIG REWRITE)';

  let guarantee: DurabilityGuarantee;
  if (mode === 'none') {
    guarantee = 'none';
    warnings.push(
      'LC_REDIS_DURABILITY=none: a Redis crash may lose the last acknowledged writes (user state, rule history, timers, claims, unsubscribes) after their Kafka offsets were committed',
    );
  } else if (mode === 'fsync-always') {
    if (fsyncAlways) guarantee = 'fsync-always';
    else if (facts.appendfsync === null && !aofOff) {
      guarantee = 'unverified';
      warnings.push(
        'LC_REDIS_DURABILITY=fsync-always could not be checked (CONFIG GET appendfsync refused): make sure the server runs `appendfsync always`',
      );
    } else {
      guarantee = 'none';
      problems.push(
        `LC_REDIS_DURABILITY=fsync-always: Redis ${version} runs ${appendonly}; ${fixFsync}`,
      );
    }
  } else if (mode === 'waitaof') {
    if (waitAof) guarantee = 'waitaof';
    else {
      guarantee = 'none';
      problems.push(
        aofOff
          ? 'LC_REDIS_DURABILITY=waitaof: the server runs `appendonly no`, so WAITAOF has no file to wait for; set `appendonly yes`'
          : `LC_REDIS_DURABILITY=waitaof: Redis ${version} has no WAITAOF (7.2 and later); upgrade, or use LC_REDIS_DURABILITY=fsync-always with \`appendfsync always\``,
      );
    }
  } else if (fsyncAlways) guarantee = 'fsync-always';
  else if (waitAof) guarantee = 'waitaof';
  else if (facts.appendfsync === null && !aofOff) {
    guarantee = 'unverified';
    warnings.push(
      `Redis ${version} would not tell its appendfsync (CONFIG GET refused) and has no WAITAOF: durability of acknowledged writes could not be checked; make sure it runs \`appendfsync always\``,
    );
  } else {
    guarantee = 'none';
    refuse(
      `Redis ${version} runs ${appendonly} and has no WAITAOF (7.2 and later): a crash loses up to a second of acknowledged user state, rule history, timers, claims and unsubscribes after their Kafka offsets were committed (a replay then sends a once-per-user rule twice or loses a delayed send). Fix: ${fixFsync}, or run Redis >= 7.2 with \`appendonly yes\`, ${ACCEPT}`,
    );
  }

  if (facts.maxmemoryPolicy === null) {
    warnings.push(
      'could not read maxmemory-policy: make sure it is `noeviction` (an evicting Redis silently drops claims and state)',
    );
  } else if (facts.maxmemoryPolicy !== 'noeviction') {
    const why = `Redis runs maxmemory-policy ${facts.maxmemoryPolicy}: under memory pressure it silently drops claims, rule history and user state (sends repeat, once-per-user rules fire again). Fix: set \`maxmemory-policy noeviction\` (CONFIG SET maxmemory-policy noeviction, and in redis.conf), ${ACCEPT}`;
    if (mode === 'none') warnings.push(why);
    else refuse(why);
  }
  return { guarantee, problems, warnings };
}

/** What a Redis client needs for the probe: INFO, CONFIG GET and arbitrary commands. */
export interface ProbedClient {
  info(): Promise<string>;
  config(op: 'GET', parameter: string): Promise<unknown>;
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
}

/** The server answered with an error (a refused or renamed command), as opposed to not answering. */
function isRefusal(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

function infoField(info: string, name: string): string | null {
  const m = new RegExp(`^${name}:(.*)$`, 'm').exec(info);
  return m ? m[1]!.trim() : null;
}

/**
 * Reads the facts: version, AOF and eviction policy from INFO (allowed on managed
 * services that rename or refuse CONFIG), appendfsync from CONFIG GET.
 */
export async function probeRedis(redis: ProbedClient): Promise<RedisFacts> {
  let info = '';
  try {
    info = await redis.info();
  } catch (err) {
    // Refused: what INFO would have said stays unknown and is reported as such.
    if (!isRefusal(err)) throw err;
  }
  const aof = infoField(info, 'aof_enabled');
  let appendfsync: string | null = null;
  let policy = infoField(info, 'maxmemory_policy');
  try {
    const reply = (await redis.config('GET', 'appendfsync')) as string[];
    appendfsync = reply[1] ?? null;
    if (policy === null)
      policy = ((await redis.config('GET', 'maxmemory-policy')) as string[])[1] ?? null;
  } catch (err) {
    // Refused (managed Redis): reported as unknown.
    if (!isRefusal(err)) throw err;
  }
  return {
    version: infoField(info, 'redis_version'),
    aofEnabled: aof === null ? null : aof === '1',
    appendfsync,
    maxmemoryPolicy: policy,
  };
}

/** Longest wait for the local fsync of one WAITAOF; past it the batch fails and is read again. */
const WAITAOF_TIMEOUT_MS = 10_000;

export interface Durability {
  readonly guarantee: DurabilityGuarantee;
  readonly facts: RedisFacts;
  /** Resolves once every write this client made before the call is on the server's disk. */
  durable: Durable;
}

export class RedisDurabilityRefused extends LifecycleError {
  constructor(readonly problems: string[]) {
    super(
      ErrorCodes.RedisDurability,
      `Redis cannot keep acknowledged writes safe:\n${problems.map((p) => `  ${p}`).join('\n')}`,
    );
    this.name = 'RedisDurabilityRefused';
  }
}

/**
 * Probes the server, decides (see `decideDurability`), logs the warnings, and throws
 * RedisDurabilityRefused when the process must not start. Under `waitaof` one WAITAOF is
 * made at once, so a server that refuses it fails here rather than on the first batch.
 */
export async function checkDurability(
  redis: ProbedClient,
  options: { mode: DurabilityMode; env: Config['env'] },
  logger: Logger,
): Promise<Durability> {
  const facts = await probeRedis(redis);
  const decision = decideDurability(facts, options.mode, options.env);
  const log = logger.child({ component: 'redis' });
  for (const w of decision.warnings) log.warn({ ...facts }, w);
  if (decision.problems.length > 0) throw new RedisDurabilityRefused(decision.problems);
  const waitAof: Durable = async () => {
    // This connection's writes: ioredis sends every command of a client on one connection, in order.
    const reply = (await redis.call('WAITAOF', 1, 0, WAITAOF_TIMEOUT_MS)) as [number, number];
    if (!Array.isArray(reply) || Number(reply[0]) < 1) {
      throw new LifecycleError(
        ErrorCodes.Redis,
        `WAITAOF: the writes were not fsynced within ${WAITAOF_TIMEOUT_MS} ms`,
        { retriable: true },
      );
    }
  };
  const durable: Durable = decision.guarantee === 'waitaof' ? waitAof : async () => {};
  if (decision.guarantee === 'waitaof') await durable();
  log.info(
    {
      guarantee: decision.guarantee,
      version: facts.version,
      appendfsync: facts.appendfsync,
      maxmemoryPolicy: facts.maxmemoryPolicy,
    },
    'redis durability',
  );
  return { guarantee: decision.guarantee, facts, durable };
}

/**
 * The Redis of a long-running process: `createRedis` plus the start-up durability check.
 * The returned deps carry `durable`, which the engine and delivery await before they
 * commit an offset or answer a preference change.
 */
export async function openRedis(
  config: Pick<Config, 'env'> & {
    redis: Pick<Config['redis'], 'url' | 'keyPrefix' | 'durability'>;
  },
  logger: Logger,
): Promise<RedisDeps & { durability: Durability }> {
  const deps = createRedis(config.redis, logger);
  try {
    const durability = await checkDurability(
      deps.redis,
      { mode: config.redis.durability, env: config.env },
      logger,
    );
    return { ...deps, durable: durability.durable, durability };
  } catch (err) {
    deps.redis.disconnect();
    throw err;
  }
}
