// Every command of `lifecycle` says what it does and has a working --help.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from './program.ts';

function walk(cmd: Command, path: string[] = []): { path: string; cmd: Command }[] {
  return cmd.commands.flatMap((c) => [
    { path: [...path, c.name()].join(' '), cmd: c },
    ...walk(c, [...path, c.name()]),
  ]);
}

describe('lifecycle commands', () => {
  const commands = walk(buildProgram());

  it('are the ones DESIGN.md names, and more', () => {
    const names = commands.map((c) => c.path);
    for (const name of [
      'rules validate',
      'simulate',
      'demo',
      'run',
      'backtest',
      'templates validate',
      'templates preview',
    ])
      expect(names).toContain(name);
  });

  it.each(commands.map((c) => [c.path, c.cmd] as const))(
    '`%s` has a description and a usage in its help',
    (path, cmd) => {
      expect(cmd.description().length, `${path} has no description`).toBeGreaterThan(10);
      const help = cmd.helpInformation();
      expect(help).toMatch(/^Usage: /);
      expect(help).toContain('-h, --help');
    },
  );

  it('prints help from the installed binary', async () => {
    const { stdout } = await promisify(execFile)(join(import.meta.dirname, 'lifecycle'), [
      '--help',
    ]);
    for (const c of commands.filter((x) => !x.path.includes(' '))) expect(stdout).toContain(c.path);
  });
});
