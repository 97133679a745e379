// The short chaos profile inside `npm test` (its own vitest project, run after unit and
// integration, alone: it restarts shared services). Every fault kind at least once; the run
// fails on any lost or duplicated email, any event, send, row or state that differs from the
// clean replay, and any poison record missing from the DLQ. LC_CHAOS_SEED replays a seed.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runChaos } from './driver.ts';

describe('the whole pipeline under faults (short profile)', () => {
  it('delivers every expected email exactly once and matches a clean replay', async () => {
    const seed = process.env.LC_CHAOS_SEED
      ? Number(process.env.LC_CHAOS_SEED)
      : Math.floor(Math.random() * 2 ** 31);
    const report = await runChaos({ long: false, seed });
    writeFileSync(path.join(report.logDir, 'report.json'), JSON.stringify(report, null, 2));
    console.log(report.table);
    expect(report.failures, `seed ${seed}; details in ${report.logDir}`).toEqual([]);
    expect(report.lost).toBe(0);
    expect(report.duplicated).toBe(0);
  }, 900_000);
});
