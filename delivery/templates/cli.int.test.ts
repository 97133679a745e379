// `lifecycle templates push|versions` against the real Kafka and Redis: a folder pushed from
// the command line is a checked, numbered, audited version of the managed template.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRedisAuditLog } from '../../access/index.ts';
import { buildProgram } from '../../bin/program.ts';
import { silentLogger } from '../../platform/logger.ts';
import { createRedis, type RedisDeps } from '../../platform/redis.ts';
import { isolate } from '../../test/support/isolation.ts';

const iso = isolate('tpl-cli');
let dir: string;
let redis: RedisDeps;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'lc-tpl-cli-'));
  redis = createRedis(iso.config().redis, silentLogger());
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  process.exitCode = undefined;
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  const own = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
  if (own.length > 0) await redis.redis.del(...own);
  redis.redis.disconnect();
});

async function lifecycle(args: string[]): Promise<{ out: string; err: string; code: number }> {
  for (const [k, v] of Object.entries(iso.env)) vi.stubEnv(k, v);
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation(
    (s: string | Uint8Array) => ((out += String(s)), true),
  );
  vi.spyOn(process.stderr, 'write').mockImplementation(
    (s: string | Uint8Array) => ((err += String(s)), true),
  );
  try {
    await buildProgram().exitOverride().parseAsync(['node', 'lifecycle', ...args]);
  } finally {
    vi.restoreAllMocks();
  }
  return { out, err, code: Number(process.exitCode ?? 0) };
}

const folder = (sms: string, sample = '{"user":{"firstName":"Ada"}}') => {
  mkdirSync(join(dir, 'promo'), { recursive: true });
  writeFileSync(join(dir, 'promo/sms.en.hbs'), sms);
  writeFileSync(join(dir, 'promo/sample.json'), sample);
};

describe('lifecycle templates push and versions', () => {
  it('pushes a checked folder as the next version, publishes it on request, lists versions, and audits each change', async () => {
    folder('Hi {{user.firstName}}');
    const first = await lifecycle(['templates', 'push', 'promo', '--dir', dir, '-m', 'first', '--publish']);
    expect(first, first.err).toMatchObject({ code: 0 });
    expect(first.out).toMatch(/^promo v1 saved \(sha256:[0-9a-f]{64}\)\npublished: sms\/\*: v1, webhook\/\*: v1\n$/);

    folder('Hi {{user.lastName}}');
    const bad = await lifecycle(['templates', 'push', 'promo', '--dir', dir, '-m', 'typo']);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain('promo/sms.en.hbs: line 1: "user.lastName" is not in sample.json');

    folder('Hello {{user.firstName}}');
    const second = await lifecycle(['templates', 'push', 'promo', '--dir', dir, '-m', 'second']);
    expect(second.out).toMatch(/^promo v2 saved/);

    const list = await lifecycle(['templates', 'versions', 'promo']);
    const actor = `cli:${userInfo().username}`;
    expect(list.code).toBe(0);
    expect(list.out.split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^v1\\t\\S+\\t${actor}\\tsha256:[0-9a-f]{12}\\tfirst$`)),
      expect.stringMatching(new RegExp(`^v2\\t\\S+\\t${actor}\\tsha256:[0-9a-f]{12}\\tsecond$`)),
      'published: sms/*: v1, webhook/*: v1',
      '',
    ]);
    expect((await lifecycle(['templates', 'versions', 'nope'])).code).toBe(1);

    const { entries } = await createRedisAuditLog(redis).query({ target: 'template:promo', limit: 10 });
    expect(entries.reverse().map((e) => [e.action, e.actor, e.role, e.after])).toEqual([
      ['template.save', actor, 'admin', expect.objectContaining({ version: 1, message: 'first' })],
      ['template.publish', actor, 'admin', expect.objectContaining({ version: 1 })],
      ['template.save', actor, 'admin', expect.objectContaining({ version: 2, message: 'second' })],
    ]);
  });
});
