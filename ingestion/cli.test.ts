import { afterEach, describe, expect, it, vi } from 'vitest';
import { Command } from 'commander';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { register } from './cli.ts';

async function cli(
  ...args: string[]
): Promise<{ out: string; exitCode: string | number | undefined }> {
  const program = new Command('lifecycle').exitOverride();
  register(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const before = process.exitCode;
  try {
    await program.parseAsync(['node', 'lifecycle', ...args]);
    return { out, exitCode: process.exitCode };
  } finally {
    spy.mockRestore();
    process.exitCode = before;
  }
}

afterEach(() => vi.restoreAllMocks());

describe('lifecycle cdc', () => {
  it('validate-mapping: ok for the shipped example, one `file:jsonpath: message` line per problem and exit 1 otherwise', async () => {
    expect(await cli('cdc', 'validate-mapping', 'ingestion/cdc-mapping.example.json')).toEqual({
      out: 'ingestion/cdc-mapping.example.json: ok (2 tables)\n',
      exitCode: undefined,
    });
    const dir = mkdtempSync(path.join(tmpdir(), 'lc-cdc-'));
    const bad = path.join(dir, 'bad.json');
    writeFileSync(
      bad,
      JSON.stringify({ source: 'db', tables: { users: { userId: 'id', insert: { evnt: 'x' } } } }),
    );
    const res = await cli('cdc', 'validate-mapping', bad);
    expect(res.exitCode).toBe(1);
    expect(res.out.trim().split('\n')).toEqual([
      `${bad}:$.tables.users.insert.event: Expected required property`,
      `${bad}:$.tables.users.insert.evnt: Unexpected property`,
    ]);
  });

  it('preview: shows the events a mapping makes of sample records', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'lc-cdc-'));
    const records = path.join(dir, 'records.jsonl');
    const source = { connector: 'postgresql', schema: 'public', table: 'users', lsn: 1, ts_ms: 1 };
    writeFileSync(
      records,
      `${JSON.stringify({ before: null, after: { id: 7, plan: 'trial' }, source, op: 'c' })}\nnot json\n`,
    );
    const { out } = await cli('cdc', 'preview', 'ingestion/cdc-mapping.example.json', records);
    const lines = out
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            line: number;
            kind: string;
            events?: { type: string; userId: string }[];
          },
      );
    expect(lines[0]).toMatchObject({
      line: 1,
      kind: 'events',
      events: [{ type: 'user_registered', userId: '7' }],
    });
    expect(lines[1]).toMatchObject({ line: 2, kind: 'dlq' });
  });
});
