// Reads scripts/stack.env, the one place the local stack's ports and folders are defined,
// and derives the LC_* variables that point the product at that stack.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';

export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

export function parseStackEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`scripts/stack.env: cannot parse line: ${line}`);
    out[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1');
  }
  return out;
}

export function readStackEnv(root = REPO_ROOT): Record<string, string> {
  return parseStackEnv(readFileSync(resolve(root, 'scripts/stack.env'), 'utf8'));
}

function need(s: Record<string, string>, key: string): string {
  const v = s[key];
  if (v === undefined || v === '') throw new Error(`scripts/stack.env has no ${key}`);
  return v;
}

/** LC_* variables for the local stack described by `s` (a parsed stack.env). */
export function localStackEnv(s: Record<string, string>): Record<string, string> {
  const h = need(s, 'STACK_HOST');
  return {
    LC_KAFKA_BROKERS: `${h}:${need(s, 'KAFKA_PORT')}`,
    LC_REDIS_URL: `redis://${h}:${need(s, 'REDIS_PORT')}`,
    LC_CLICKHOUSE_URL: `http://${h}:${need(s, 'CLICKHOUSE_HTTP_PORT')}`,
    LC_POSTGRES_URL: `postgresql://${need(s, 'POSTGRES_USER')}@${h}:${need(s, 'POSTGRES_PORT')}/${need(s, 'POSTGRES_DB')}`,
    LC_SMTP_URLS: `smtp://${h}:${need(s, 'SMTP_PORT')}`,
  };
}

export function localConnectUrl(s: Record<string, string>): string {
  return `http://${need(s, 'STACK_HOST')}:${need(s, 'CONNECT_PORT')}`;
}

export function localSmtpApiUrl(s: Record<string, string>): string {
  return `http://${need(s, 'STACK_HOST')}:${need(s, 'SMTP_HTTP_PORT')}`;
}
