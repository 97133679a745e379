// One root pino logger per process; components take children with their own bindings.
// PII (emails, phones, names) and secrets are redacted wherever they appear in log fields.
import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';
import { secretPaths } from './config.ts';

export type { Logger } from 'pino';

const PII_KEYS = [
  'email',
  'phone',
  'fullName',
  'firstName',
  'lastName',
  'address',
  'ip',
  'token',
  'authorization',
  'password',
  'writeKey',
  'secret',
  'deviceToken',
  'to',
];

export function redactPaths(): string[] {
  const paths = new Set<string>();
  for (const key of PII_KEYS) {
    paths.add(key);
    paths.add(`*.${key}`);
    paths.add(`*.*.${key}`);
  }
  for (const p of [
    'req.headers.authorization',
    'req.headers.cookie',
    'headers.authorization',
    'config.auth',
    'config.clickhouse.password',
    'config.delivery.smtpUrls',
  ])
    paths.add(p);
  for (const p of secretPaths()) paths.add(`config.${p}`);
  return [...paths];
}

export function createLogger(
  options: { level?: string; name?: string } = {},
  destination?: DestinationStream,
): Logger {
  const opts: LoggerOptions = {
    name: options.name ?? 'lifecycle',
    level: options.level ?? 'info',
    redact: { paths: redactPaths(), censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(opts, destination) : pino(opts);
}

/** A logger that drops everything, for unit tests and the CLI's quiet paths. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
