import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatRuleError } from './check.ts';
import { listTemplates, loadRuleSet, watchRuleSet } from './loader.ts';
import type { RuleError, RuleSet } from './types.ts';

const examples = new URL('examples', import.meta.url).pathname;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'lc-rules-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const write = (name: string, content: unknown) =>
  writeFile(
    path.join(dir, name),
    typeof content === 'string' ? content : JSON.stringify(content, null, 2),
  );

const rule = (id: string, template = 'welcome') => ({
  id,
  category: 'marketing',
  trigger: { event: 'user_registered' },
  action: { send: { template, channels: ['email'] } },
});

describe('loadRuleSet', () => {
  it('loads the examples, segments included', async () => {
    const result = await loadRuleSet(examples, { templatesDir: await templatesFixture() });
    if (!result.ok) throw new Error(result.errors.map(formatRuleError).join('\n'));
    expect(result.ruleSet.rules.map((r) => r.def.id).sort()).toEqual([
      'payment-failed',
      'trial-activation-day3',
      'trial-ending',
      'trial-ending-fallback',
      'weekly-digest',
      'welcome',
      'winback-30d',
    ]);
    expect(result.ruleSet.segments.map((s) => s.def.id)).toEqual(['active_7d', 'inactive_30d']);
    expect(result.ruleSet.bySegment.get('inactive_30d:enter')!.map((r) => r.def.id)).toEqual([
      'winback-30d',
    ]);
  });

  it('switches on the rules named in `enable` (a disabled draft being backtested), and only those', async () => {
    await write('a.json', [
      { ...rule('draft'), enabled: false },
      { ...rule('off'), enabled: false },
    ]);
    await write('b.json', rule('live'));
    const plain = await loadRuleSet(dir);
    const enabled = await loadRuleSet(dir, { enable: ['draft'] });
    if (!plain.ok || !enabled.ok) throw new Error('expected both to load');
    const ids = (rs: RuleSet) =>
      rs.byEvent
        .get('user_registered')!
        .map((r) => r.def.id)
        .sort();
    expect(ids(plain.ruleSet)).toEqual(['live']);
    expect(ids(enabled.ruleSet)).toEqual(['draft', 'live']);
  });

  it("reports bad JSON with line and column next to the other files' errors", async () => {
    await write('a.json', '{\n  "id": "a",\n  "category": "marketing"\n  "trigger": {}\n}\n');
    await write('b.json', { ...rule('b'), category: 'promo' });
    await write('rule.schema.json', { not: 'a rule' });
    await write('notes.md', 'ignored');
    const result = await loadRuleSet(dir);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.map(formatRuleError)).toEqual([
      `${dir}/a.json:$: invalid JSON at line 4, column 3: expected "," or "}" after a value (missing comma?)`,
      `${dir}/b.json:$.category: "promo" is not allowed: use one of "marketing", "transactional"`,
    ]);
  });

  it('finds templates as folders or files named X.*', async () => {
    const templatesDir = path.join(dir, 'templates');
    await mkdir(path.join(templatesDir, 'welcome'), { recursive: true });
    await writeFile(path.join(templatesDir, 'winback.en.hbs'), '');
    expect([...(await listTemplates(templatesDir))].sort()).toEqual([
      'welcome',
      'winback',
      'winback.en',
    ]);
    await write('r.json', [
      rule('a', 'welcome'),
      rule('b', 'winback'),
      rule('c', 'payment_failed'),
    ]);
    const result = await loadRuleSet(dir, { templatesDir });
    expect(result.ok ? [] : result.errors.map(formatRuleError)).toEqual([
      `${dir}/r.json:$[2].action.send.template: unknown template "payment_failed": no folder or file of that name in the templates folder`,
    ]);
  });

  it('says when the folder is missing', async () => {
    const result = await loadRuleSet(path.join(dir, 'nope'));
    expect(result.ok ? [] : result.errors.map(formatRuleError)).toEqual([
      `${dir}/nope:$: rules folder not found`,
    ]);
  });
});

describe('watchRuleSet', () => {
  it('swaps in a valid edit, rejects an invalid one and keeps the previous set', async () => {
    await write('a.json', rule('a'));
    const initial = await loadRuleSet(dir);
    if (!initial.ok) throw new Error('fixture invalid');
    const swaps: RuleSet[] = [];
    const rejects: RuleError[][] = [];
    const watcher = watchRuleSet(
      dir,
      { debounceMs: 50, currentVersion: initial.ruleSet.version },
      {
        onSwap: (rs) => swaps.push(rs),
        onReject: (errors) => rejects.push(errors),
      },
    );
    try {
      await write('b.json', rule('b'));
      await until(() => swaps.length === 1);
      expect(swaps[0]!.rules.map((r) => r.def.id).sort()).toEqual(['a', 'b']);
      expect(swaps[0]!.version).not.toBe(initial.ruleSet.version);

      await write('c.json', '{ "id": "c", ');
      await until(() => rejects.length === 1);
      expect(swaps).toHaveLength(1);
      expect(rejects[0]!.map(formatRuleError)).toEqual([
        `${dir}/c.json:$: invalid JSON at line 1, column 14: expected a "quoted" field name, found end of file`,
      ]);

      await mkdir(path.join(dir, 'segments'));
      await write('segments/s.json', { id: 's', conditions: { all: [] } });
      await write('c.json', { ...rule('c'), trigger: { segment: 's', on: 'enter' } });
      await until(() => swaps.length === 2);
      expect(swaps[1]!.bySegment.get('s:enter')!.map((r) => r.def.id)).toEqual(['c']);
    } finally {
      await watcher.close();
    }
  });
});

async function until(done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the watcher');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function templatesFixture(): Promise<string> {
  const templatesDir = path.join(dir, 'templates');
  for (const name of [
    'welcome',
    'activation_tip',
    'activation_tip_b',
    'trial_ending',
    'payment_failed',
    'winback',
    'weekly_digest',
  ]) {
    await mkdir(path.join(templatesDir, name), { recursive: true });
  }
  return templatesDir;
}
