// Columns added to the tables after their first release, on the ClickHouse server of the stack
// (18.16, which has no ADD COLUMN IF NOT EXISTS): a sends table made by an older sink gains
// them at the next start, keeps its rows, and two sinks starting at once both succeed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../test/support/clickhouse.ts';
import { SENDS } from '../test/support/analytics-fixtures.ts';
import { isolate } from '../test/support/isolation.ts';
import { addMissingColumns, ensureSchema, sendRow, tableDdl } from './schema.ts';

describe('columns added since the first release', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase(isolate('ch-columns').config());
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('are added to a sends table an older sink made, whose rows read them as empty', async () => {
    const current = tableDdl(db.database).sends;
    const older = current.replace(',\n  template_version UInt32,\n  origin String', '');
    expect(older).not.toBe(current);
    await db.store.command(older);
    const { origin: _o, template_version: _v, ...oldRow } = sendRow(SENDS[0]!);
    await db.store.insert(`${db.database}.sends`, [oldRow]);

    // Two sinks start at once against the old table.
    const [a, b] = await Promise.all([
      addMissingColumns(db.store, db.database),
      addMissingColumns(db.store, db.database),
    ]);
    // Each column is added once by one of them, or by both when their reads crossed; neither fails.
    expect(new Set([...a, ...b])).toEqual(new Set(['sends.origin', 'sends.template_version']));
    await ensureSchema(db.store, db.database, { payloadTtlDays: 30 });
    expect(await addMissingColumns(db.store, db.database)).toEqual([]);

    await db.store.insert(`${db.database}.sends`, [
      sendRow({ ...SENDS[1]!, origin: 'api:key_backend', templateVersion: 2 }),
    ]);
    const rows = await db.store.query<{
      send_id: string;
      origin: string;
      template_version: number;
    }>(`SELECT send_id, origin, template_version FROM ${db.database}.sends ORDER BY origin`);
    expect(rows.map((r) => [r.send_id, r.origin, Number(r.template_version)])).toEqual([
      [SENDS[0]!.sendId, '', 0],
      [SENDS[1]!.sendId, 'api:key_backend', 2],
    ]);
  });
});
