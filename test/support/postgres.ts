// PostgreSQL access for tests through psql (the machine's client), so no driver is needed.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Runs SQL (stops at the first error) and returns the unaligned, tuples-only output lines. */
export async function psql(url: string, sql: string): Promise<string[]> {
  const { stdout } = await run(
    'psql',
    [url, '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    { timeout: 60_000 },
  );
  return stdout.split('\n').filter((l) => l !== '');
}

/** Drops a logical replication slot (and its publication) if they exist; waits for the slot to be released. */
export async function dropReplication(
  url: string,
  slot: string,
  publication?: string,
): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const active = await psql(
      url,
      `select active from pg_replication_slots where slot_name = '${slot.replace(/'/g, "''")}'`,
    );
    if (active.length === 0) break;
    if (active[0] === 'f') {
      await psql(url, `select pg_drop_replication_slot('${slot.replace(/'/g, "''")}')`);
      break;
    }
    if (Date.now() > deadline) throw new Error(`replication slot ${slot} is still in use`);
    await new Promise((r) => setTimeout(r, 250));
  }
  if (publication)
    await psql(url, `drop publication if exists "${publication.replace(/"/g, '""')}"`);
}
