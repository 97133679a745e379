import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const bin = path.join(root, 'bin/lifecycle');

async function lifecycle(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(bin, args, {
      cwd: root,
      env: { ...process.env, ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (failure) {
    const err = failure as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof err.code === 'number' ? err.code : -1,
      stdout: err.stdout ?? '',
      stderr: err.stderr ?? '',
    };
  }
}

let bad: string;
beforeAll(async () => {
  bad = await mkdtemp(path.join(tmpdir(), 'lc-rules-cli-'));
  await mkdir(path.join(bad, 'segments'));
  await writeFile(
    path.join(bad, 'nudge.json'),
    JSON.stringify({
      id: 'nudge',
      category: 'marketing',
      trigger: { event: 'user_registered', delay: '3 days' },
      conditions: {
        all: [{ fact: 'stats', path: '$.export_done.count', operator: 'equals', value: 0 }],
      },
      action: { send: { template: 'nudge', channels: ['email'] } },
    }),
  );
  await writeFile(path.join(bad, 'segments', 'broken.json'), '{"id": "broken",}');
});
afterAll(async () => {
  await rm(bad, { recursive: true, force: true });
});

describe('lifecycle rules validate', () => {
  it('exits 0 with a one-line summary for the examples', async () => {
    const result = await lifecycle(['rules', 'validate', 'rules/examples']);
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split('\n')).toHaveLength(1);
    expect(result.stdout).toMatch(
      /^rules\/examples: 7 rules \(7 enabled\), 2 segments, 8 event types; valid \(version [0-9a-f]{16}\)\n$/,
    );
  }, 60_000);

  it('exits 1 with one file:jsonpath: message line per error', async () => {
    const result = await lifecycle(['rules', 'validate', bad]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toEqual([
      `${bad}/nudge.json:$.trigger.delay: invalid duration "3 days": use a whole number followed by s, m, h, d or w (e.g. "90s", "15m", "12h", "3d", "2w")`,
      expect.stringMatching(
        new RegExp(
          `^${bad}/nudge\\.json:\\$\\.conditions\\.all\\[0\\]\\.operator: unknown operator "equals" \\(did you mean "equal"\\?\\): use one of `,
        ),
      ),
      `${bad}/segments/broken.json:$: invalid JSON at line 1, column 17: trailing comma before "}"`,
    ]);
  }, 60_000);

  it('checks templates with --templates, and reads the folder from LC_RULES_DIR by default', async () => {
    const templates = path.join(bad, 'templates');
    await mkdir(path.join(templates, 'welcome'), { recursive: true });
    const result = await lifecycle(['rules', 'validate', '--templates', templates], {
      LC_RULES_DIR: 'rules/examples',
    });
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toContain(
      'rules/examples/activation-day3.json:$.action.send.template: unknown template "activation_tip": no folder or file of that name in the templates folder',
    );
    expect(lines.every((l) => /^rules\/examples\/[^:]+\.json:\$[^ ]*: /.test(l))).toBe(true);
    expect(lines.some((l) => l.includes('"welcome"'))).toBe(false);
  }, 60_000);

  it('checks the message types rules name against LC_MESSAGE_TYPES_FILE, or --message-types, and the file itself', async () => {
    const types = path.join(bad, 'types.json');
    await writeFile(
      types,
      JSON.stringify({
        types: [
          {
            id: 'digest',
            label: 'Digest',
            description: 'Weekly.',
            category: 'marketing',
            optIn: false,
            switchable: true,
            channels: { email: true },
          },
        ],
      }),
    );
    // The examples name billing and offers, which this file does not declare.
    const narrow = await lifecycle([
      'rules',
      'validate',
      'rules/examples',
      '--message-types',
      types,
    ]);
    expect(narrow.code).toBe(1);
    expect(narrow.stderr.trim().split('\n')).toEqual([
      'rules/examples/payment-failed.json:$.messageType: unknown message type "billing": types are declared in the message types file ("digest")',
      'rules/examples/winback.json:$.messageType: unknown message type "offers": types are declared in the message types file ("digest")',
    ]);
    const broken = path.join(bad, 'broken-types.json');
    await writeFile(broken, JSON.stringify({ types: [{ id: 'Tips' }] }));
    const invalid = await lifecycle(['rules', 'validate', 'rules/examples'], {
      LC_MESSAGE_TYPES_FILE: broken,
    });
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain(
      `${broken}:$.types[0].id: invalid id "Tips": lower case letters, digits and _, starting with a letter`,
    );
  }, 60_000);
});
