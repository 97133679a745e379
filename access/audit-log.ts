// The audit log: one record per change made through the staff API (who, with which role,
// did what to what, before and after, in which request, when).
//
// Where: a Redis stream under the configured key prefix, not a Kafka topic materialised
// into ClickHouse. A change must be queryable the moment it is answered, and the sink's
// batches reach ClickHouse seconds later; the stream is written before the answer, on the
// product's durable Redis (every write fsynced before its reply, no eviction), shared by
// every instance, and its ids are times, so `since`/`until` are range reads and a cursor is
// the last id seen. It is never trimmed: an audit log is kept, not sampled.
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import type { AuditRecord, AuditSink } from '../platform/http.ts';
import type { RedisDeps } from '../platform/redis.ts';

export type AuditEntry = AuditRecord & { id: string };

export interface AuditQuery {
  actor?: string;
  action?: string;
  target?: string;
  /** Epoch ms, inclusive. */
  since?: number;
  /** Epoch ms, inclusive. */
  until?: number;
  /** The `next` of the previous page. */
  cursor?: string;
  limit: number;
}

export interface AuditPage {
  entries: AuditEntry[];
  /** Give it back as `cursor` for older entries; null when there are none. */
  next: string | null;
}

export interface AuditLog extends AuditSink {
  /** Newest first. */
  query(q: AuditQuery): Promise<AuditPage>;
}

/** Entries read per filtered page at most, so a filter that matches little stays cheap; the cursor resumes the scan. */
const SCAN_BUDGET = 5_000;
const CHUNK = 500;

const matches = (e: AuditRecord, q: AuditQuery) =>
  (q.actor === undefined || e.actor === q.actor) &&
  (q.action === undefined || e.action === q.action) &&
  (q.target === undefined || e.target === q.target);

/** A stream id (`<ms>-<seq>`) as a cursor; anything else is refused with what to send. */
function checkCursor(cursor: string): string {
  if (!/^\d+-\d+$/.test(cursor))
    throw new LifecycleError(
      ErrorCodes.BadRequest,
      'cursor is not one this API gave out: pass the `next` of the previous page unchanged',
      { details: { field: 'cursor' } },
    );
  return cursor;
}

export function createRedisAuditLog({ redis, keys, durable }: RedisDeps): AuditLog {
  const stream = keys.global('{auth}:audit');
  return {
    async append(record) {
      const id = await redis.xadd(stream, '*', 'r', JSON.stringify(record));
      if (id === null) throw new LifecycleError(ErrorCodes.Redis, 'XADD to the audit log failed');
      await durable?.();
      return id;
    },
    async query(q) {
      const entries: AuditEntry[] = [];
      // Newest first: from the cursor (exclusive) or `until` down to `since`.
      let end = q.cursor !== undefined ? `(${checkCursor(q.cursor)}` : String(q.until ?? '+');
      const start = q.since === undefined ? '-' : String(q.since);
      let scanned = 0;
      for (;;) {
        const chunk = await redis.xrevrange(stream, end, start, 'COUNT', CHUNK);
        for (const [id, fields] of chunk) {
          scanned += 1;
          const record = JSON.parse(fields[1] ?? 'null') as AuditRecord;
          if (matches(record, q)) entries.push({ id, ...record });
          // A full page may have older matches: the client asks with `next`.
          if (entries.length === q.limit) return { entries, next: id };
        }
        const last = chunk[chunk.length - 1]?.[0];
        if (chunk.length < CHUNK || last === undefined) return { entries, next: null };
        // A sparse filter stops after the budget; the cursor resumes the scan where it stopped.
        if (scanned >= SCAN_BUDGET) return { entries, next: last };
        end = `(${last}`;
      }
    },
  };
}

export function createMemoryAuditLog(now: () => number = Date.now): AuditLog {
  const all: AuditEntry[] = [];
  let lastMs = 0;
  let seq = 0;
  return {
    async append(record) {
      const ms = Math.max(now(), lastMs);
      seq = ms === lastMs ? seq + 1 : 0;
      lastMs = ms;
      const id = `${ms}-${seq}`;
      all.push({ id, ...record });
      return id;
    },
    async query(q) {
      const older = (id: string, than: string) => {
        const [a, b] = id.split('-').map(Number) as [number, number];
        const [c, d] = than.split('-').map(Number) as [number, number];
        return a < c || (a === c && b < d);
      };
      const cursor = q.cursor === undefined ? undefined : checkCursor(q.cursor);
      const hits = [...all]
        .reverse()
        .filter((e) => cursor === undefined || older(e.id, cursor))
        .filter((e) => {
          const ms = Number(e.id.split('-')[0]);
          return (
            (q.since === undefined || ms >= q.since) && (q.until === undefined || ms <= q.until)
          );
        })
        .filter((e) => matches(e, q));
      const entries = hits.slice(0, q.limit);
      return {
        entries,
        next: hits.length > q.limit ? (entries[entries.length - 1]?.id ?? null) : null,
      };
    },
  };
}
