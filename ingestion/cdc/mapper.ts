// Row change -> normalised events, as the mapping file says. Pure: the same change always
// yields the same events with the same ids, so a connector that replays changes after a
// restart produces events that consumers recognise as already seen.
import { createHash } from 'node:crypto';
import type { NormalisedEvent } from '../../platform/contracts.ts';
import type { ChangeRecord } from './debezium.ts';
import { tableMapping, type CdcMapping, type TableMapping } from './mapping.ts';
import { convertRow } from './values.ts';

export type MapOutcome =
  | { kind: 'events'; events: NormalisedEvent[] }
  | { kind: 'skip'; reason: string }
  | { kind: 'dlq'; reason: string };

/** JSON with sorted keys: the same key object always hashes the same. */
function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** Position of the change in the database log: PostgreSQL lsn, MySQL binlog file/pos/row, ... */
function logPosition(r: ChangeRecord): string | undefined {
  const s = r.source;
  if (s.lsn != null) return `lsn:${String(s.lsn)}`;
  if (s.file != null && s.pos != null)
    return `binlog:${String(s.file)}:${String(s.pos)}:${String(s.row ?? 0)}`;
  for (const k of ['change_lsn', 'commit_lsn', 'scn', 'txId'])
    if (s[k] != null) return `${k}:${String(s[k])}`;
  return undefined;
}

/** Event id from (source, log position, table, primary key, event type), formatted as a UUID. */
export function cdcEventId(
  source: string,
  position: string,
  table: string,
  pk: unknown,
  type: string,
): string {
  const h = createHash('sha256')
    .update(`${source}\n${position}\n${table}\n${stable(pk)}\n${type}`)
    .digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function pick(
  row: Record<string, unknown>,
  which: boolean | string[] | undefined,
  dflt: boolean,
  t: TableMapping,
): Record<string, unknown> {
  const sel = which ?? dflt;
  if (sel === false) return {};
  const cols = sel === true ? Object.keys(row) : sel;
  const out: Record<string, unknown> = {};
  for (const c of cols) {
    if (t.exclude?.includes(c) || !(c in row)) continue;
    out[t.rename?.[c] ?? c] = row[c];
  }
  return out;
}

const matches = (expected: unknown, actual: unknown) =>
  expected === undefined ||
  (Array.isArray(expected)
    ? expected.some((e) => stable(e) === stable(actual))
    : stable(expected) === stable(actual));

export interface MapContext {
  receivedAt: number;
}

export function mapChange(record: ChangeRecord, mapping: CdcMapping, ctx: MapContext): MapOutcome {
  if (record.op === 't' || record.op === 'm')
    return { kind: 'skip', reason: record.op === 't' ? 'truncate' : 'logical decoding message' };
  const found = tableMapping(mapping, record.schema, record.table);
  if (!found)
    return {
      kind: 'dlq',
      reason: `unknown table ${record.schema ? `${record.schema}.` : ''}${record.table}: not in the CDC mapping`,
    };
  const { name: table, mapping: t } = found;
  const before = record.before ? convertRow(record.before, record.columns, t.columns) : null;
  const after = record.after ? convertRow(record.after, record.columns, t.columns) : null;
  const row = after ?? before;
  if (!row)
    return { kind: 'dlq', reason: `op ${record.op} on ${table} has neither before nor after` };
  const rawUser = row[t.userId];
  if (rawUser === null || rawUser === undefined || rawUser === '') {
    const hint =
      record.op === 'd'
        ? ' (deletes need REPLICA IDENTITY FULL when the user id is not the primary key)'
        : '';
    return {
      kind: 'dlq',
      reason: `no user id: column ${t.userId} of ${table} is empty or missing${hint}`,
    };
  }
  const userId = typeof rawUser === 'object' ? stable(rawUser) : String(rawUser);
  const position = logPosition(record) ?? `ts:${record.tsMs}`;
  const pk = record.key ?? row;
  const sourceName = `cdc:${mapping.source}`;
  const traits = after ? pick(after, t.traits, true, t) : undefined;

  const make = (
    type: string,
    properties: Record<string, unknown>,
    withTraits: boolean,
  ): NormalisedEvent => {
    const e: NormalisedEvent = {
      id: cdcEventId(sourceName, position, table, pk, type),
      userId,
      type,
      ts: record.tsMs || ctx.receivedAt,
      receivedAt: ctx.receivedAt,
      source: sourceName,
      properties,
      context: { cdc: { table, op: record.op } },
    };
    if (withTraits && traits && Object.keys(traits).length > 0) e.traits = traits;
    return e;
  };
  const identify = (): MapOutcome => {
    if (!traits || Object.keys(traits).length === 0)
      return { kind: 'skip', reason: 'no traits mapped' };
    return { kind: 'events', events: [make('identify', {}, true)] };
  };

  const op = record.op === 'r' && t.snapshot === 'events' ? 'c' : record.op;
  switch (op) {
    case 'r':
      if (t.snapshot === 'skip')
        return { kind: 'skip', reason: 'snapshot rows are skipped for this table' };
      return identify();
    case 'c':
      if (!t.insert)
        return t.insert === false
          ? { kind: 'skip', reason: 'inserts are ignored for this table' }
          : identify();
      return {
        kind: 'events',
        events: [make(t.insert.event, pick(after!, t.insert.properties, true, t), true)],
      };
    case 'd':
      if (!t.delete) return { kind: 'skip', reason: 'deletes are ignored for this table' };
      return {
        kind: 'events',
        events: [make(t.delete.event, pick(before ?? {}, t.delete.properties, true, t), false)],
      };
    case 'u': {
      const events: NormalisedEvent[] = [];
      // Without a before image (REPLICA IDENTITY DEFAULT) nothing can be said to have changed.
      if (before) {
        for (const rule of t.update ?? []) {
          const cols = Array.isArray(rule.when) ? rule.when : [rule.when];
          const changed = cols.filter((c) => stable(before[c]) !== stable(after![c]));
          if (changed.length === 0) continue;
          let props: Record<string, unknown>;
          if (cols.length === 1) {
            const c = cols[0]!;
            if (!matches(rule.from, before[c]) || !matches(rule.to, after![c])) continue;
            props = { from: before[c], to: after![c] };
          } else {
            props = {
              changes: Object.fromEntries(
                changed.map((c) => [c, { from: before[c], to: after![c] }]),
              ),
            };
          }
          events.push(
            make(rule.event, { ...pick(after!, rule.properties, false, t), ...props }, true),
          );
        }
      }
      if (events.length > 0) return { kind: 'events', events };
      if (before && traits) {
        const old = pick(before, t.traits, true, t);
        if (stable(old) === stable(traits))
          return { kind: 'skip', reason: 'no mapped column changed' };
      }
      return identify();
    }
    default:
      return { kind: 'skip', reason: `op ${String(op)}` };
  }
}
