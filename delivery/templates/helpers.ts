// The few helpers content managers may use in templates. They are pure, never touch
// prototypes, and take the recipient's locale and timezone from the render's @data frame
// (`@locale`, `@timezone`) unless a hash argument overrides them.
import type { HelperOptions } from 'handlebars';

type Handlebars = typeof import('handlebars');

const DATE_STYLES = {
  date: { dateStyle: 'medium' },
  long: { dateStyle: 'long' },
  short: { dateStyle: 'short' },
  datetime: { dateStyle: 'medium', timeStyle: 'short' },
  time: { timeStyle: 'short' },
} as const satisfies Record<string, Intl.DateTimeFormatOptions>;

function frame(options: HelperOptions): { locale: string; timezone: string } {
  const data = (options.data ?? {}) as { locale?: unknown; timezone?: unknown };
  const hash = (options.hash ?? {}) as { locale?: unknown; timezone?: unknown };
  const locale =
    typeof hash.locale === 'string'
      ? hash.locale
      : typeof data.locale === 'string'
        ? data.locale
        : 'en';
  const timezone =
    typeof hash.timezone === 'string'
      ? hash.timezone
      : typeof data.timezone === 'string'
        ? data.timezone
        : 'UTC';
  return { locale, timezone };
}

// Building an Intl formatter costs far more than formatting; keep them (bounded: locales x
// timezones x styles actually seen).
const MAX_CACHED = 2_000;
const dateFormats = new Map<string, Intl.DateTimeFormat>();
const moneyFormats = new Map<string, Intl.NumberFormat>();

function cached<T>(map: Map<string, T>, key: string, make: () => T): T {
  let v = map.get(key);
  if (v === undefined) {
    if (map.size >= MAX_CACHED) map.clear();
    v = make();
    map.set(key, v);
  }
  return v;
}

/** Intl throws on malformed locale tags and unknown zones; a bad trait must not break the whole message. */
function dateFormat(
  locale: string,
  timezone: string,
  style: keyof typeof DATE_STYLES,
): Intl.DateTimeFormat {
  return cached(dateFormats, `${locale}|${timezone}|${style}`, () => {
    const fmt = DATE_STYLES[style];
    for (const [l, tz] of [
      [locale, timezone],
      [locale, 'UTC'],
      ['en', timezone],
      ['en', 'UTC'],
    ] as const) {
      try {
        return new Intl.DateTimeFormat(l, { ...fmt, timeZone: tz });
      } catch {
        // try the next, safer combination
      }
    }
    return new Intl.DateTimeFormat('en', { ...fmt, timeZone: 'UTC' });
  });
}

function moneyFormat(locale: string, currency: string): Intl.NumberFormat {
  return cached(moneyFormats, `${locale}|${currency}`, () => {
    try {
      return new Intl.NumberFormat(locale, { style: 'currency', currency });
    } catch (err) {
      if (err instanceof RangeError && /currency/i.test(err.message)) throw err;
      return new Intl.NumberFormat('en', { style: 'currency', currency });
    }
  });
}

function toDate(value: unknown): Date | null {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value;
  if (typeof value === 'number' && Number.isFinite(value)) return new Date(value);
  if (typeof value === 'string' && value.trim() !== '') {
    const d = /^\d+$/.test(value) ? new Date(Number(value)) : new Date(value);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  return null;
}

/** `{{formatDate event.properties.endsAt}}`, `{{formatDate ts "datetime"}}`, `{{formatDate ts "long" timezone="Europe/Berlin"}}` */
export function formatDate(value: unknown, ...rest: unknown[]): string {
  const options = rest[rest.length - 1] as HelperOptions;
  const style = typeof rest[0] === 'string' && rest.length > 1 ? rest[0] : 'date';
  const date = toDate(value);
  if (!date)
    throw new Error(
      `formatDate: ${JSON.stringify(value)} is not a date (epoch ms or ISO 8601 expected)`,
    );
  if (!(style in DATE_STYLES))
    throw new Error(
      `formatDate: unknown style "${style}" (use ${Object.keys(DATE_STYLES).join(', ')})`,
    );
  const { locale, timezone } = frame(options);
  return dateFormat(locale, timezone, style as keyof typeof DATE_STYLES).format(date);
}

/** `{{formatCurrency event.properties.amount "EUR"}}`; amounts are in major units (12.5 = 12,50 €). */
export function formatCurrency(amount: unknown, ...rest: unknown[]): string {
  const options = rest[rest.length - 1] as HelperOptions;
  const currency = typeof rest[0] === 'string' && rest.length > 1 ? rest[0] : 'USD';
  const n =
    typeof amount === 'number'
      ? amount
      : typeof amount === 'string' && amount.trim() !== ''
        ? Number(amount)
        : NaN;
  if (!Number.isFinite(n))
    throw new Error(`formatCurrency: ${JSON.stringify(amount)} is not a number`);
  const { locale } = frame(options);
  try {
    return moneyFormat(locale, currency).format(n);
  } catch {
    throw new Error(`formatCurrency: "${currency}" is not an ISO 4217 currency code`);
  }
}

/** `{{default user.firstName "there"}}`: the first argument that is not null, undefined or empty. */
export function defaultValue(...args: unknown[]): unknown {
  const values = args.slice(0, -1);
  for (const v of values) if (v !== undefined && v !== null && v !== '') return v;
  return values[values.length - 1] ?? '';
}

/** `{{#if (eq user.plan "trial")}}` */
export function eq(a: unknown, b: unknown): boolean {
  return a === b;
}

export function registerHelpers(hb: Handlebars): void {
  hb.registerHelper('formatDate', formatDate);
  hb.registerHelper('formatCurrency', formatCurrency);
  hb.registerHelper('default', defaultValue);
  hb.registerHelper('eq', eq);
}
