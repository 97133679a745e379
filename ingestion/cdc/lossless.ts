// 64-bit integers without loss. Debezium writes int64 columns (snowflake ids, bigint user
// ids, NanoTimestamp, PostgreSQL's `infinity` as epoch micros) as JSON numbers and Avro
// longs; JavaScript numbers hold integers exactly only up to 2^53. JSON.parse would round
// such a user id to a neighbour's (events for the wrong user) and avsc refuses the long
// ("potential precision loss"). Both decoders here give a number when the integer is safe
// and its decimal string when it is not, so every digit survives.
import avro from 'avsc';

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_LONG = -(1n << 63n);
const MAX_LONG = (1n << 63n) - 1n;

/** A safe integer as a number, anything larger as its decimal string. */
export function exactInteger(n: bigint): number | string {
  return n >= MIN_SAFE && n <= MAX_SAFE ? Number(n) : n.toString();
}

/** Every safe integer has at most 16 digits; without a run of 16 digits there is nothing to do. */
const SIXTEEN_DIGITS = /\d{16}/;

/**
 * A JSON string literal (skipped as a whole, so digits inside strings are never touched), or
 * an integer literal of 16 or more digits standing as a value: after `[`, `,` or `:` (or at
 * the start) and before `,`, `]`, `}` (or the end). Anything else (fractions, exponents,
 * object keys, digits glued to other characters) is left for JSON.parse to judge.
 */
const STRING_OR_LONG_INTEGER = /"(?:[^"\\]|\\[\s\S])*"|(?<=(?:^|[[,:])[ \t\n\r]*)-?[1-9]\d{15,}(?=[ \t\n\r]*(?:[,\]}]|$))/g;

/**
 * Quotes the integer literals of a JSON text that a JavaScript number cannot hold exactly,
 * so JSON.parse returns them as decimal strings. Valid JSON stays valid and invalid JSON
 * stays invalid; every other value parses exactly as before.
 */
export function quoteUnsafeIntegers(text: string): string {
  if (!SIXTEEN_DIGITS.test(text)) return text;
  return text.replace(STRING_OR_LONG_INTEGER, (token) => {
    if (token.charCodeAt(0) === 0x22) return token;
    const n = BigInt(token);
    return n >= MIN_SAFE && n <= MAX_SAFE ? token : `"${token}"`;
  });
}

/** JSON.parse that keeps every digit of large integers (as decimal strings). */
export function parseJsonLossless(text: string): unknown {
  return JSON.parse(quoteUnsafeIntegers(text)) as unknown;
}

const isIntegerText = (v: string) => /^-?\d+$/.test(v);

/**
 * avsc's documented hook for custom long representations (`types.LongType.__with`): reads
 * the 8 bytes as a BigInt and returns a number when it is safe, else its decimal string.
 * Writing takes a number, a bigint or a decimal string.
 */
export const losslessLong = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer) => exactInteger(buf.readBigInt64LE()),
  toBuffer: (v: number | bigint | string) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(BigInt(v));
    return buf;
  },
  fromJSON: (v: unknown) => (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string' ? exactInteger(BigInt(v)) : v),
  toJSON: (v: number | string) => v,
  isValid: (v: unknown) => {
    if (typeof v === 'number') return Number.isSafeInteger(v);
    if (typeof v === 'string' && !isIntegerText(v)) return false;
    if (typeof v !== 'string' && typeof v !== 'bigint') return false;
    const n = BigInt(v);
    return n >= MIN_LONG && n <= MAX_LONG;
  },
  compare: (a: number | bigint | string, b: number | bigint | string) => {
    const x = BigInt(a);
    const y = BigInt(b);
    return x === y ? 0 : x < y ? -1 : 1;
  },
});

/**
 * `typeHook` for avro.Type.forSchema: every long, written `"long"` or as an object with
 * attributes (Debezium's `{"type": "long", "connect.name": "io.debezium.time.NanoTimestamp"}`,
 * which avsc's `registry` option would not reach), decodes through losslessLong.
 */
export function losslessLongs(schema: avro.Schema): avro.Type | undefined {
  const type = typeof schema === 'object' && schema !== null && !Array.isArray(schema) ? (schema as { type?: unknown }).type : schema;
  return type === 'long' ? losslessLong : undefined;
}
