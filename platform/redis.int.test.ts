// The start-up durability check against real redis-servers of the test's own, one per
// setting: appendfsync always passes, everysec (no WAITAOF on this 7.0 server), no AOF and
// an evicting policy are refused outside development, and LC_REDIS_DURABILITY=none accepts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from './config.ts';
import { silentLogger } from './logger.ts';
import { openRedis, RedisDurabilityRefused, supportsWaitAof } from './redis.ts';
import {
  startPrivateRedis,
  type PrivateRedis,
  type PrivateRedisOptions,
} from '../test/support/private-redis.ts';

const servers: PrivateRedis[] = [];
let always: PrivateRedis;
let everysec: PrivateRedis;

async function server(options: PrivateRedisOptions): Promise<PrivateRedis> {
  const s = await startPrivateRedis(options);
  servers.push(s);
  return s;
}

beforeAll(async () => {
  [always, everysec] = await Promise.all([
    server({ appendfsync: 'always' }),
    server({ appendfsync: 'everysec' }),
  ]);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

const open = (s: PrivateRedis, env: Record<string, string> = {}) =>
  openRedis(loadConfig({ NODE_ENV: 'test', LC_REDIS_URL: s.url, ...env }), silentLogger());

describe('openRedis on real servers', () => {
  it('runs on appendfsync always, with nothing to wait for', async () => {
    const r = await open(always);
    try {
      expect(r.durability.guarantee).toBe('fsync-always');
      await r.durable!();
    } finally {
      r.redis.disconnect();
    }
  });

  it('refuses everysec on a server without WAITAOF, naming the setting and the fix', async () => {
    const probe = await open(everysec, { LC_REDIS_DURABILITY: 'none' });
    probe.redis.disconnect();
    if (supportsWaitAof(probe.durability.facts.version)) {
      // A 7.2+ server is accepted with WAITAOF instead; this machine's is 7.0.
      const r = await open(everysec);
      expect(r.durability.guarantee).toBe('waitaof');
      r.redis.disconnect();
      return;
    }
    const r = await open(everysec).catch((e: unknown) => e);
    expect(r).toBeInstanceOf(RedisDurabilityRefused);
    expect((r as Error).message).toContain('runs `appendfsync everysec`');
    expect((r as Error).message).toContain('CONFIG SET appendfsync always');
    expect((r as Error).message).toContain('LC_REDIS_DURABILITY=none');
    // Development warns and goes on; `none` accepts the risk anywhere.
    for (const env of [{ NODE_ENV: 'development' }, { LC_REDIS_DURABILITY: 'none' }] as Record<
      string,
      string
    >[]) {
      const ok = await open(everysec, env);
      expect(ok.durability.guarantee).toBe('none');
      ok.redis.disconnect();
    }
    await expect(open(everysec, { LC_REDIS_DURABILITY: 'fsync-always' })).rejects.toThrow(
      /LC_REDIS_DURABILITY=fsync-always/,
    );
  });

  it('refuses a server without an append-only file and one that evicts', async () => {
    const [noAof, lru] = await Promise.all([
      server({ appendonly: false }),
      server({ appendfsync: 'always', maxmemoryPolicy: 'allkeys-lru' }),
    ]);
    await expect(open(noAof)).rejects.toThrow(/`appendonly no`/);
    await expect(open(lru)).rejects.toThrow(/maxmemory-policy allkeys-lru[\s\S]*noeviction/);
    const accepted = await open(lru, { LC_REDIS_DURABILITY: 'none' });
    accepted.redis.disconnect();
  });

  it('does not start against a server that does not answer', async () => {
    const gone = await server({});
    await gone.kill();
    await expect(open(gone)).rejects.toThrow();
  });
});
