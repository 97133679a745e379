// Debezium's wire encodings of column values -> the values a rule author expects:
// timestamps as ISO 8601 strings (UTC, millisecond precision), dates as YYYY-MM-DD,
// decimals as numbers, JSON columns parsed. The encoding is known from the record's
// schema (Connect `name`, Avro `connect.name`) or, without schemas, from the mapping.
import type { ColumnType } from './mapping.ts';

/** How one column is encoded on the wire. */
export interface ColumnEncoding {
  /** Connect semantic type, e.g. io.debezium.time.MicroTimestamp. */
  name?: string;
  /** Mapping-declared type, for topics without schemas. */
  declared?: ColumnType;
  scale?: number;
  /** Database column type, when the connector propagates it (`column.propagate.source.type`). */
  sourceType?: string;
}

const iso = (ms: number) => (Number.isFinite(ms) ? new Date(ms).toISOString() : null);

function decimalFromBytes(bytes: Buffer, scale: number): number {
  if (bytes.length === 0) return 0;
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  // two's complement
  if (bytes[0]! & 0x80) n -= 1n << BigInt(bytes.length * 8);
  return Number(n) / 10 ** scale;
}

function toDecimal(v: unknown, scale: number | undefined): unknown {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const n = Number(v);
    if (v.trim() !== '' && Number.isFinite(n)) return n;
    // JSON converter writes precise decimals as base64 of the unscaled two's-complement integer.
    if (scale !== undefined && /^[A-Za-z0-9+/]*={0,2}$/.test(v)) return decimalFromBytes(Buffer.from(v, 'base64'), scale);
    return v;
  }
  if (Buffer.isBuffer(v)) return decimalFromBytes(v, scale ?? 0);
  if (v && typeof v === 'object' && 'scale' in v && 'value' in v) {
    // io.debezium.data.VariableScaleDecimal: {scale, value}
    const s = Number((v as { scale: unknown }).scale);
    return toDecimal((v as { value: unknown }).value, s);
  }
  return v;
}

function toTimestamp(v: unknown, unit: 'ms' | 'us' | 'ns' | 'auto'): unknown {
  if (typeof v === 'string') {
    const ms = Date.parse(v);
    return Number.isNaN(ms) ? v : iso(ms);
  }
  if (typeof v === 'bigint') v = Number(v);
  if (typeof v !== 'number') return v;
  if (unit === 'auto') unit = Math.abs(v) > 1e17 ? 'ns' : Math.abs(v) > 1e14 ? 'us' : 'ms';
  return iso(unit === 'ms' ? v : unit === 'us' ? Math.floor(v / 1000) : Math.floor(v / 1e6));
}

function toDate(v: unknown): unknown {
  if (typeof v !== 'number') return typeof v === 'string' ? v : v;
  return new Date(v * 86_400_000).toISOString().slice(0, 10);
}

function toJson(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v) as unknown;
  } catch {
    return v;
  }
}

const BY_NAME: Record<string, (v: unknown, enc: ColumnEncoding) => unknown> = {
  'io.debezium.time.Timestamp': (v) => toTimestamp(v, 'ms'),
  'io.debezium.time.MicroTimestamp': (v) => toTimestamp(v, 'us'),
  'io.debezium.time.NanoTimestamp': (v) => toTimestamp(v, 'ns'),
  'io.debezium.time.ZonedTimestamp': (v) => toTimestamp(v, 'auto'),
  'io.debezium.time.Date': toDate,
  'org.apache.kafka.connect.data.Date': toDate,
  'org.apache.kafka.connect.data.Timestamp': (v) => toTimestamp(v, 'ms'),
  'org.apache.kafka.connect.data.Decimal': (v, e) => toDecimal(v, e.scale),
  'io.debezium.data.VariableScaleDecimal': (v, e) => toDecimal(v, e.scale),
  'io.debezium.data.Json': toJson,
};

const BY_DECLARED: Record<ColumnType, (v: unknown) => unknown> = {
  string: (v) => (v == null || typeof v === 'object' ? v : String(v)),
  number: (v) => (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v),
  boolean: (v) => (v === 't' || v === 'true' || v === 1 ? true : v === 'f' || v === 'false' || v === 0 ? false : v),
  json: toJson,
  decimal: (v) => toDecimal(v, undefined),
  timestamp: (v) => toTimestamp(v, 'auto'),
  'timestamp-millis': (v) => toTimestamp(v, 'ms'),
  'timestamp-micros': (v) => toTimestamp(v, 'us'),
  'timestamp-nanos': (v) => toTimestamp(v, 'ns'),
  'date-days': toDate,
};

export function convertValue(value: unknown, enc: ColumnEncoding | undefined): unknown {
  if (value === null || value === undefined) return null;
  if (enc?.declared) return BY_DECLARED[enc.declared](value);
  const byName = enc?.name ? BY_NAME[enc.name] : undefined;
  if (byName) return byName(value, enc!);
  // decimal.handling.mode=string leaves no semantic name; the propagated source type says it is numeric.
  if (typeof value === 'string' && enc?.sourceType && /^(NUMERIC|DECIMAL|MONEY)$/i.test(enc.sourceType)) return toDecimal(value, undefined);
  if (typeof value === 'bigint') return Number(value);
  if (Buffer.isBuffer(value)) return value.toString('base64');
  return value;
}

/** Converts every column of a row; declared (mapping) types win over schema names. */
export function convertRow(row: Record<string, unknown>, schema: Map<string, ColumnEncoding>, declared: Record<string, ColumnType> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [col, v] of Object.entries(row)) {
    const d = declared?.[col];
    out[col] = convertValue(v, d ? { declared: d } : schema.get(col));
  }
  return out;
}
