// Per-test isolation: every test gets its own topic prefix, consumer groups, Redis key
// prefix and ClickHouse database, so integration test files run in parallel on one stack.
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { loadConfig, type Config } from '../../platform/config.ts';
import type { StackInfo } from './context.ts';

/** A short id unique across workers and runs: `<label>_<worker>_<time>_<random>`, [a-z0-9_]. */
export function uniqueId(label = 't'): string {
  const clean =
    label
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_+|_+$/g, '')
      .slice(0, 20) || 't';
  const worker = process.pid.toString(36);
  return `${clean}_${worker}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

export interface Isolation {
  id: string;
  topicPrefix: string;
  groupPrefix: string;
  redisKeyPrefix: string;
  clickhouseDatabase: string;
  /** The stack's LC_* variables plus this test's prefixes and groups. */
  env: Record<string, string>;
  /** loadConfig over `env` (plus extra variables), frozen like the product's. */
  config(extra?: Record<string, string>): Readonly<Config>;
  /** A consumer group name of this test. */
  group(name: string): string;
}

export function stack(): StackInfo {
  return inject('stack');
}

export function isolate(label = 't'): Isolation {
  const id = uniqueId(label);
  const topicPrefix = `lct.${id}`;
  const groupPrefix = `lct-${id}`;
  const redisKeyPrefix = `lct:${id}:`;
  const clickhouseDatabase = `lc_test_${id}`;
  const env = {
    ...stack().env,
    LC_TOPIC_PREFIX: topicPrefix,
    LC_REDIS_KEY_PREFIX: redisKeyPrefix,
    LC_CLICKHOUSE_DATABASE: clickhouseDatabase,
    LC_ENGINE_GROUP: `${groupPrefix}-engine`,
    LC_DELIVERY_GROUP: `${groupPrefix}-delivery`,
    LC_SINK_GROUP: `${groupPrefix}-sink`,
    LC_SCHEDULER_GROUP: `${groupPrefix}-scheduler`,
    LC_CHDB_PATH: `.data/test/${id}`,
    // Tests of delivery, campaigns and the message log record consents as given; the tests of
    // double opt-in itself (delivery/optin/) turn it on.
    LC_DOUBLE_OPT_IN: 'false',
  };
  return {
    id,
    topicPrefix,
    groupPrefix,
    redisKeyPrefix,
    clickhouseDatabase,
    env,
    config: (extra = {}) => loadConfig({ ...env, ...extra }),
    group: (name) => `${groupPrefix}-${name}`,
  };
}
