import { describe, expect, it } from 'vitest';
import { silentLogger } from './logger.ts';
import {
  checkDurability,
  decideDurability,
  probeRedis,
  RedisDurabilityRefused,
  supportsWaitAof,
  type ProbedClient,
  type RedisFacts,
} from './redis.ts';

const ours: RedisFacts = {
  version: '7.0.15',
  aofEnabled: true,
  appendfsync: 'everysec',
  maxmemoryPolicy: 'noeviction',
};
const always: RedisFacts = { ...ours, appendfsync: 'always' };
const modern: RedisFacts = { ...ours, version: '7.4.2' };

describe('decideDurability', () => {
  it('needs nothing to wait for under appendfsync always, on any version', () => {
    expect(decideDurability(always, 'auto', 'production')).toEqual({
      guarantee: 'fsync-always',
      problems: [],
      warnings: [],
    });
    expect(decideDurability({ ...always, version: '7.4.0' }, 'auto', 'test').guarantee).toBe(
      'fsync-always',
    );
    expect(decideDurability(always, 'fsync-always', 'production').guarantee).toBe('fsync-always');
  });

  it('waits with WAITAOF on Redis 7.2+ with AOF when fsync is not per write', () => {
    expect(decideDurability(modern, 'auto', 'production')).toEqual({
      guarantee: 'waitaof',
      problems: [],
      warnings: [],
    });
    expect(
      decideDurability({ ...always, version: '7.2.0' }, 'waitaof', 'production').guarantee,
    ).toBe('waitaof');
  });

  it('refuses everysec without WAITAOF outside development, naming the setting and the fix', () => {
    for (const env of ['production', 'test'] as const) {
      const d = decideDurability(ours, 'auto', env);
      expect(d.guarantee).toBe('none');
      expect(d.problems).toHaveLength(1);
      expect(d.problems[0]).toContain('Redis 7.0.15 runs `appendfsync everysec`');
      expect(d.problems[0]).toContain('appendfsync always');
      expect(d.problems[0]).toContain('LC_REDIS_DURABILITY=none');
    }
  });

  it('refuses a server without AOF, even a modern one', () => {
    const d = decideDurability({ ...modern, aofEnabled: false }, 'auto', 'production');
    expect(d.problems[0]).toContain('`appendonly no`');
    expect(
      decideDurability({ ...modern, aofEnabled: false }, 'waitaof', 'production').problems[0],
    ).toContain('appendonly yes');
  });

  it('only warns in development, and accepts the risk when told to', () => {
    const dev = decideDurability(ours, 'auto', 'development');
    expect(dev).toMatchObject({ guarantee: 'none', problems: [] });
    expect(dev.warnings[0]).toContain('appendfsync everysec');
    const none = decideDurability(
      { ...ours, maxmemoryPolicy: 'allkeys-lru' },
      'none',
      'production',
    );
    expect(none.problems).toEqual([]);
    expect(none.guarantee).toBe('none');
    expect(none.warnings.join('\n')).toContain('LC_REDIS_DURABILITY=none');
    expect(none.warnings.join('\n')).toContain('allkeys-lru');
  });

  it('holds an explicit mode to what it names', () => {
    expect(decideDurability(ours, 'fsync-always', 'development').problems[0]).toContain(
      'LC_REDIS_DURABILITY=fsync-always',
    );
    expect(decideDurability(always, 'waitaof', 'production').problems[0]).toContain(
      'has no WAITAOF',
    );
  });

  it('refuses an evicting server', () => {
    const d = decideDurability(
      { ...always, maxmemoryPolicy: 'volatile-lru' },
      'auto',
      'production',
    );
    expect(d.guarantee).toBe('fsync-always');
    expect(d.problems).toHaveLength(1);
    expect(d.problems[0]).toContain('maxmemory-policy volatile-lru');
    expect(d.problems[0]).toContain('noeviction');
  });

  it('goes on with a warning where the server will not tell (CONFIG refused)', () => {
    const managed = { ...ours, appendfsync: null };
    const d = decideDurability(managed, 'auto', 'production');
    expect(d).toMatchObject({ guarantee: 'unverified', problems: [] });
    expect(d.warnings[0]).toContain('could not be checked');
    expect(decideDurability({ ...managed, version: '7.2.4' }, 'auto', 'production').guarantee).toBe(
      'waitaof',
    );
    expect(decideDurability(managed, 'fsync-always', 'production')).toMatchObject({
      guarantee: 'unverified',
      problems: [],
    });
    expect(
      decideDurability({ ...always, maxmemoryPolicy: null }, 'auto', 'production').warnings[0],
    ).toContain('maxmemory-policy');
  });
});

describe('supportsWaitAof', () => {
  it('starts at 7.2', () => {
    expect(['7.0.15', '7.1.0', '6.2.14', '', 'x'].map(supportsWaitAof)).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(['7.2.0', '7.4.2', '8.0.1'].map(supportsWaitAof)).toEqual([true, true, true]);
    expect(supportsWaitAof(null)).toBe(false);
  });
});

/** A client answering INFO and CONFIG GET from `facts`, recording the commands it was sent. */
function fakeClient(
  facts: { version: string; aof: boolean; appendfsync: string; policy: string },
  opts: { configRefused?: boolean; down?: boolean; waitAofReply?: unknown } = {},
) {
  const calls: string[] = [];
  const client: ProbedClient = {
    async info() {
      if (opts.down) throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
      return `# Server\r\nredis_version:${facts.version}\r\n# Memory\r\nmaxmemory_policy:${facts.policy}\r\n# Persistence\r\naof_enabled:${facts.aof ? 1 : 0}\r\n`;
    },
    async config(_op, parameter) {
      if (opts.configRefused)
        throw Object.assign(new Error("ERR unknown command 'CONFIG'"), { name: 'ReplyError' });
      return [parameter, parameter === 'appendfsync' ? facts.appendfsync : facts.policy];
    },
    async call(command, ...args) {
      calls.push([command, ...args].join(' '));
      return opts.waitAofReply ?? [1, 0];
    },
  };
  return { client, calls };
}

describe('probeRedis and checkDurability', () => {
  it('reads version, AOF and eviction policy from INFO and appendfsync from CONFIG GET', async () => {
    const { client } = fakeClient({
      version: '7.0.15',
      aof: true,
      appendfsync: 'always',
      policy: 'noeviction',
    });
    expect(await probeRedis(client)).toEqual({
      version: '7.0.15',
      aofEnabled: true,
      appendfsync: 'always',
      maxmemoryPolicy: 'noeviction',
    });
    const { client: managed } = fakeClient(
      { version: '7.0.15', aof: true, appendfsync: 'always', policy: 'noeviction' },
      { configRefused: true },
    );
    expect(await probeRedis(managed)).toEqual({
      version: '7.0.15',
      aofEnabled: true,
      appendfsync: null,
      maxmemoryPolicy: 'noeviction',
    });
    // A server that does not answer is not a server that refuses to tell: the start fails.
    const { client: down } = fakeClient(
      { version: '7.0.15', aof: true, appendfsync: 'always', policy: 'noeviction' },
      { down: true },
    );
    await expect(probeRedis(down)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('under appendfsync always, durable() sends nothing', async () => {
    const { client, calls } = fakeClient({
      version: '7.4.2',
      aof: true,
      appendfsync: 'always',
      policy: 'noeviction',
    });
    const d = await checkDurability(client, { mode: 'auto', env: 'production' }, silentLogger());
    expect(d.guarantee).toBe('fsync-always');
    await d.durable();
    expect(calls).toEqual([]);
  });

  it('under WAITAOF, durable() waits for the local fsync and fails (retriably) when it does not come', async () => {
    const { client, calls } = fakeClient({
      version: '7.4.2',
      aof: true,
      appendfsync: 'everysec',
      policy: 'noeviction',
    });
    const d = await checkDurability(client, { mode: 'auto', env: 'production' }, silentLogger());
    expect(d.guarantee).toBe('waitaof');
    await d.durable();
    // One at start (a server refusing it fails there), one for the call above.
    expect(calls).toEqual(['WAITAOF 1 0 10000', 'WAITAOF 1 0 10000']);
    const { client: slow } = fakeClient(
      { version: '7.4.2', aof: true, appendfsync: 'everysec', policy: 'noeviction' },
      { waitAofReply: [0, 0] },
    );
    await expect(
      checkDurability(slow, { mode: 'auto', env: 'production' }, silentLogger()),
    ).rejects.toMatchObject({ retriable: true });
  });

  it('refuses to start on our 7.0 everysec server with every problem listed', async () => {
    const { client } = fakeClient({
      version: '7.0.15',
      aof: true,
      appendfsync: 'everysec',
      policy: 'allkeys-lru',
    });
    const err = await checkDurability(client, { mode: 'auto', env: 'test' }, silentLogger()).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RedisDurabilityRefused);
    expect((err as RedisDurabilityRefused).problems).toHaveLength(2);
    expect((err as Error).message).toMatch(
      /appendfsync everysec[\s\S]*maxmemory-policy allkeys-lru/,
    );
    expect(
      await checkDurability(client, { mode: 'none', env: 'test' }, silentLogger()),
    ).toMatchObject({ guarantee: 'none' });
  });
});
