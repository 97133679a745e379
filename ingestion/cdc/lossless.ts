// 64-bit integers without loss. Debezium writes int64 columns (snowflake ids, bigint user
// ids, NanoTimestamp, PostgreSQL's `infinity` as epoch micros) as JSON numbers and Avro
// longs; JavaScript numbers hold integers exactly only up to 2^53. JSON.parse would round
// such a user id to a neighbour's (events for the wrong user) and avsc refuses the long
// ("potential precision loss"). Both decoders here give a number when the integer is safe
// and its decimal string when it is not, so every digit survives.
// JSON goes through the native JSON.parse after a pre-pass that quotes only the unsafe
// integer literals (about 0.65 µs per 350-byte record, nothing when no 16-digit run is
// present) rather than a JavaScript JSON parser: lossless-json 4.3, the library made for
// this, took 15 µs for a 600-byte Debezium record that JSON.parse reads in 2 µs, and
// schema-carrying records are ten times that size.
import avro from 'avsc';

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_LONG = -(1n << 63n);
const MAX_LONG = (1n << 63n) - 1n;

/** A safe integer as a number, anything larger as its decimal string. */
export function exactInteger(n: bigint): number | string {
  return n >= MIN_SAFE && n <= MAX_SAFE ? Number(n) : n.toString();
}

/** Every unsafe integer has at least 16 digits; without a run of 16 digits there is nothing to do. */
const SIXTEEN_DIGITS = /\d{16}/;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;
const isDigit = (c: number) => c >= ZERO && c <= NINE;
const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
/** `[`, `,`, `:`: what a value follows (and the start of the text). */
const beforeValue = (c: number) => c === 0x5b || c === 0x2c || c === 0x3a;
/** `,`, `]`, `}`, or the end (-1): what a value is followed by. */
const afterValue = (c: number) => c === -1 || c === 0x2c || c === 0x5d || c === 0x7d;

/**
 * Quotes the integer literals of a JSON text that a JavaScript number cannot hold exactly,
 * so JSON.parse returns them as decimal strings. Only integer literals standing as a value
 * (after `[`, `,` or `:` and before `,`, `]`, `}` or the end) are touched; strings are
 * skipped whole, and fractions, exponents, object keys and malformed numbers are left for
 * JSON.parse to judge, so valid JSON stays valid and invalid JSON stays invalid. One pass,
 * linear in the text's length whatever it holds.
 */
export function quoteUnsafeIntegers(text: string): string {
  if (!SIXTEEN_DIGITS.test(text)) return text;
  const n = text.length;
  let out = '';
  let copied = 0;
  let prev = 0x5b;
  for (let i = 0; i < n;) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // The string ends at the next quote not escaped by an odd run of backslashes.
      let end = i;
      for (;;) {
        end = text.indexOf('"', end + 1);
        if (end < 0) return out + text.slice(copied); // unterminated: invalid whatever follows
        let k = end - 1;
        while (text.charCodeAt(k) === BACKSLASH) k--;
        if ((end - 1 - k) % 2 === 0) break;
      }
      prev = QUOTE;
      i = end + 1;
    } else if (isSpace(c)) {
      i++;
    } else if ((c === MINUS || isDigit(c)) && beforeValue(prev)) {
      const digits = c === MINUS ? i + 1 : i;
      let end = digits;
      while (end < n && isDigit(text.charCodeAt(end))) end++;
      let next = end;
      while (next < n && isSpace(text.charCodeAt(next))) next++;
      if (
        end - digits >= 16 &&
        text.charCodeAt(digits) !== ZERO &&
        afterValue(next < n ? text.charCodeAt(next) : -1)
      ) {
        const literal = text.slice(i, end);
        const value = BigInt(literal);
        if (value < MIN_SAFE || value > MAX_SAFE) {
          out += `${text.slice(copied, i)}"${literal}"`;
          copied = end;
        }
      }
      prev = ZERO;
      i = Math.max(end, i + 1);
    } else {
      prev = c;
      i++;
    }
  }
  return copied === 0 ? text : out + text.slice(copied);
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
  fromJSON: (v: unknown) =>
    typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string'
      ? exactInteger(BigInt(v))
      : v,
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
  const type =
    typeof schema === 'object' && schema !== null && !Array.isArray(schema)
      ? (schema as { type?: unknown }).type
      : schema;
  return type === 'long' ? losslessLong : undefined;
}
