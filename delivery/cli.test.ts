import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { register } from './cli.ts';
import { verifyInappToken } from './inapp/token.ts';
import { overlay as deepMerge } from './templates/routes.ts';

const dirs: string[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  process.exitCode = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function cli(args: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation(
    (s: string | Uint8Array) => ((out += String(s)), true),
  );
  vi.spyOn(process.stderr, 'write').mockImplementation(
    (s: string | Uint8Array) => ((err += String(s)), true),
  );
  const program = new Command('lifecycle').exitOverride();
  register(program);
  await program.parseAsync(['node', 'lifecycle', ...args]);
  const code = Number(process.exitCode ?? 0);
  vi.restoreAllMocks();
  return { out, err, code };
}

function fixture(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'lc-cli-'));
  dirs.push(dir);
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), content);
  }
  return dir;
}

describe('lifecycle templates', () => {
  it('validate prints one `file: message` line per problem and exits 1', async () => {
    const dir = fixture({
      'ok/sms.en.hbs': 'Hi {{user.firstName}}',
      'ok/sample.json': '{"user":{"firstName":"Ada"}}',
      'bad/sms.en.hbs': 'Hi {{user.nickname}}',
      'bad/sample.json': '{"user":{"firstName":"Ada"}}',
    });
    const r = await cli(['templates', 'validate', dir]);
    expect(r.code).toBe(1);
    expect(r.out).toBe(
      `${join(dir, 'bad/sms.en.hbs')}: body: line 1: missing variable "nickname" in {{user.nickname}}\n`,
    );
  });

  it('validate exits 0 on the shipped templates', async () => {
    const r = await cli(['templates', 'validate', join(import.meta.dirname, '../templates')]);
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/templates OK/);
  });

  it('preview renders a template for given data over its sample', async () => {
    const dir = fixture({
      'hi/email.en.hbs':
        '---\nsubject: Hi {{user.firstName}} ({{user.plan}})\nlayout: none\n---\n<p>Hello {{user.firstName}}</p>',
      'hi/email.de.hbs':
        '---\nsubject: Hallo {{user.firstName}}\nlayout: none\n---\n<p>Hallo {{user.firstName}}</p>',
      'hi/sample.json': '{"user":{"firstName":"Ada","plan":"trial"}}',
    });
    const en = await cli([
      'templates',
      'preview',
      'hi',
      '--dir',
      dir,
      '--data',
      '{"user":{"firstName":"Jo"}}',
    ]);
    expect(en.out).toBe(
      'Subject: Hi Jo (trial)\n\n----- text -----\nHello Jo\n\n----- html -----\n<p>Hello Jo</p>\n',
    );
    const de = await cli([
      'templates',
      'preview',
      'hi',
      '--dir',
      dir,
      '--locale',
      'de-AT',
      '--html',
    ]);
    expect(de.out).toBe('<p>Hallo Ada</p>\n');
    const missing = await cli(['templates', 'preview', 'nope', '--dir', dir]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/template "nope" not found/);
  });
});

describe('lifecycle inapp-token', () => {
  it('signs with LC_INAPP_SECRET, not with the secret of tracking links', async () => {
    vi.stubEnv('LC_INAPP_SECRET', 'cli-inapp-secret-0123');
    vi.stubEnv('LC_SIGNING_SECRET', 'cli-signing-secret-0123');
    const r = await cli(['inapp-token', 'user-7', '--ttl', '5']);
    expect(r.code).toBe(0);
    const token = r.out.trim();
    expect(verifyInappToken('cli-inapp-secret-0123', token)).toBe('user-7');
    expect(verifyInappToken('cli-signing-secret-0123', token)).toBeNull();
  });
});

describe('preview data overlay', () => {
  it('overlays nested objects and ignores prototype keys', () => {
    expect(deepMerge({ user: { a: 1, b: 2 }, list: [1] }, { user: { b: 3 }, list: [2] })).toEqual({
      user: { a: 1, b: 3 },
      list: [2],
    });
    const merged = deepMerge(
      {},
      JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>,
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(merged).toEqual({});
  });
});
