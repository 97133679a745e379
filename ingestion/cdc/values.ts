// Debezium's wire encodings of column values -> the values a rule author expects:
// timestamps as ISO 8601 strings (UTC, millisecond precision), dates as YYYY-MM-DD,
// decimals as numbers, JSON columns parsed. The encoding is known from the record's
// schema (Connect `name`, Avro `connect.name`) or, without schemas, from the mapping.
//
// Nothing here throws and nothing loses digits silently: integers beyond 2^53 arrive as
// decimal strings (see lossless.ts) and stay strings, decimals with more than 15
// significant digits stay strings, and times beyond the range of a JavaScript Date (how
// Debezium writes PostgreSQL's `infinity` / `-infinity`) become "infinity" / "-infinity".
import { exactInteger } from './lossless.ts';
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

/** A JavaScript Date holds ±8.64e15 ms (±100,000,000 days) around the epoch. */
const MAX_DATE_MS = 8_640_000_000_000_000n;

/** Epoch milliseconds -> ISO 8601, or "infinity" / "-infinity" beyond the Date range. */
function isoFromMs(ms: bigint): string {
  if (ms > MAX_DATE_MS) return 'infinity';
  if (ms < -MAX_DATE_MS) return '-infinity';
  return new Date(Number(ms)).toISOString();
}

const INTEGER_TEXT = /^-?\d+$/;

/** An integral wire value (number, bigint or the decimal string of a large integer) as a bigint. */
function integral(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (typeof v === 'string' && INTEGER_TEXT.test(v)) return BigInt(v);
  return undefined;
}

/** Floor division: epoch values before 1970 round towards earlier times, as Date does. */
function floorDiv(n: bigint, d: bigint): bigint {
  const q = n / d;
  return n % d !== 0n && n < 0n ? q - 1n : q;
}

const PER_MS = { ms: 1n, us: 1000n, ns: 1_000_000n } as const;

function toTimestamp(v: unknown, unit: 'ms' | 'us' | 'ns' | 'auto'): unknown {
  const n = integral(v);
  if (n !== undefined) return isoFromMs(floorDiv(n, PER_MS[unit === 'auto' ? autoUnit(n) : unit]));
  if (typeof v === 'number') {
    // A fractional epoch value (a double column declared as a timestamp).
    if (Number.isNaN(v)) return null;
    if (!Number.isFinite(v)) return v > 0 ? 'infinity' : '-infinity';
    return isoFromMs(
      BigInt(
        Math.floor(v / Number(PER_MS[unit === 'auto' ? autoUnit(BigInt(Math.trunc(v))) : unit])),
      ),
    );
  }
  if (typeof v === 'string') {
    const ms = Date.parse(v);
    return Number.isNaN(ms) ? v : isoFromMs(BigInt(ms));
  }
  return v;
}

/** Guesses the unit of an undeclared epoch value by its size (ms until the year 5138, then µs, then ns). */
function autoUnit(n: bigint): 'ms' | 'us' | 'ns' {
  const abs = n < 0n ? -n : n;
  return abs > 100_000_000_000_000_000n ? 'ns' : abs > 100_000_000_000_000n ? 'us' : 'ms';
}

/** Days since the epoch -> YYYY-MM-DD, or "infinity" / "-infinity" beyond the Date range. */
function toDate(v: unknown): unknown {
  const days = integral(v);
  if (days === undefined) return v;
  const iso = isoFromMs(days * 86_400_000n);
  return iso.endsWith('infinity') ? iso : iso.slice(0, 10);
}

const DECIMAL_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Significant digits of a decimal literal (leading and trailing zeros do not count). */
function significantDigits(text: string): number {
  const mantissa = text
    .replace(/^[+-]/, '')
    .replace(/[eE].*$/, '')
    .replace('.', '');
  return mantissa.replace(/^0+/, '').replace(/0+$/, '').length;
}

/**
 * A decimal written as text (`decimal.handling.mode=string`, a NUMERIC source column, a
 * declared `number`/`decimal`): a number when a double holds it exactly as written (at most
 * 15 significant digits, or a safe integer), else the text itself, which keeps every digit.
 * Text that is not a decimal (`NaN`, `Infinity` from PostgreSQL) stays as it is.
 */
function decimalFromText(v: string): number | string {
  const t = v.trim();
  if (!DECIMAL_TEXT.test(t)) return v;
  if (significantDigits(t) <= 15) return Number(t) || 0; // no -0
  if (INTEGER_TEXT.test(t)) return exactInteger(BigInt(t));
  return v;
}

/** The unscaled two's-complement big-endian integer of Connect's Decimal, scaled. */
function decimalFromBytes(bytes: Buffer, scale: number): number | string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  if (bytes.length > 0 && bytes[0]! & 0x80) n -= 1n << BigInt(bytes.length * 8);
  if (scale <= 0) return decimalFromText((n * 10n ** BigInt(-scale)).toString());
  const digits = (n < 0n ? -n : n).toString().padStart(scale + 1, '0');
  return decimalFromText(`${n < 0n ? '-' : ''}${digits.slice(0, -scale)}.${digits.slice(-scale)}`);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Connect's Decimal (`decimal.handling.mode=precise`): bytes, which the JSON converter
 * writes as base64 (so "0000" is three zero bytes, not the number 0). A JSON number is
 * the converter's `decimal.format=NUMERIC`; text that is not base64 is a plain decimal.
 */
function toConnectDecimal(v: unknown, scale: number | undefined): unknown {
  if (Buffer.isBuffer(v)) return decimalFromBytes(v, scale ?? 0);
  if (typeof v === 'string')
    return BASE64.test(v)
      ? decimalFromBytes(Buffer.from(v, 'base64'), scale ?? 0)
      : decimalFromText(v);
  return v;
}

/** io.debezium.data.VariableScaleDecimal: {scale, value} with value as Connect's Decimal bytes. */
function toVariableScaleDecimal(v: unknown, enc: ColumnEncoding): unknown {
  if (v && typeof v === 'object' && !Buffer.isBuffer(v) && 'scale' in v && 'value' in v) {
    const { scale, value } = v as { scale: unknown; value: unknown };
    return toConnectDecimal(value, Number(scale));
  }
  return toConnectDecimal(v, enc.scale);
}

/** Decimals written as text or numbers (`decimal.handling.mode=string` or `double`); a VariableScaleDecimal object as such. */
function toTextDecimal(v: unknown): unknown {
  if (typeof v === 'string') return decimalFromText(v);
  return v && typeof v === 'object' && 'scale' in v && 'value' in v
    ? toVariableScaleDecimal(v, {})
    : v;
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
  'org.apache.kafka.connect.data.Decimal': (v, e) => toConnectDecimal(v, e.scale),
  'io.debezium.data.VariableScaleDecimal': toVariableScaleDecimal,
  'io.debezium.data.Json': toJson,
};

const BY_DECLARED: Record<ColumnType, (v: unknown) => unknown> = {
  string: (v) => (v == null || typeof v === 'object' ? v : String(v)),
  number: toTextDecimal,
  boolean: (v) =>
    v === 't' || v === 'true' || v === 1 ? true : v === 'f' || v === 'false' || v === 0 ? false : v,
  json: toJson,
  decimal: toTextDecimal,
  timestamp: (v) => toTimestamp(v, 'auto'),
  'timestamp-millis': (v) => toTimestamp(v, 'ms'),
  'timestamp-micros': (v) => toTimestamp(v, 'us'),
  'timestamp-nanos': (v) => toTimestamp(v, 'ns'),
  'date-days': toDate,
};

export function convertValue(value: unknown, enc: ColumnEncoding | undefined): unknown {
  if (value === null || value === undefined) return null;
  if (enc?.declared) {
    // Bytes (Connect's Decimal in Avro) mean a number only through the record's schema, which
    // a declared type cannot replace: the schema's encoding reads them, with its scale.
    const bySchema = Buffer.isBuffer(value) && enc.name ? BY_NAME[enc.name] : undefined;
    return bySchema ? bySchema(value, enc) : BY_DECLARED[enc.declared](value);
  }
  const byName = enc?.name ? BY_NAME[enc.name] : undefined;
  if (byName) return byName(value, enc!);
  // decimal.handling.mode=string leaves no semantic name; the propagated source type says it is numeric.
  if (
    typeof value === 'string' &&
    enc?.sourceType &&
    /^(NUMERIC|DECIMAL|MONEY)$/i.test(enc.sourceType)
  )
    return decimalFromText(value);
  if (typeof value === 'bigint') return exactInteger(value);
  if (Buffer.isBuffer(value)) return value.toString('base64');
  return value;
}

/** Converts every column of a row; declared (mapping) types win over schema names, except for bytes (see convertValue). */
export function convertRow(
  row: Record<string, unknown>,
  schema: Map<string, ColumnEncoding>,
  declared: Record<string, ColumnType> | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [col, v] of Object.entries(row)) {
    const d = declared?.[col];
    out[col] = convertValue(v, d ? { ...schema.get(col), declared: d } : schema.get(col));
  }
  return out;
}
