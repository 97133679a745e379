// `lifecycle keys create|list|revoke`: staff API keys straight in the key store (Redis of
// LC_REDIS_URL), so the first admin key of a deployment needs nothing but the store. Every
// change is written to the audit log as made by `cli:<OS user>` with the role admin.
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import type { Writable } from 'node:stream';
import { ConfigError, loadConfig } from '../platform/config.ts';
import { errorMessage, LifecycleError } from '../platform/errors.ts';
import { ROLES, type AuditRecord } from '../platform/http.ts';
import { silentLogger } from '../platform/logger.ts';
import { openRedis, type RedisDeps } from '../platform/redis.ts';
import {
  createRedisApiKeyStore,
  expiryFrom,
  generateToken,
  isRole,
  type ApiKey,
  type ApiKeyStore,
} from './api-keys.ts';
import { createRedisAuditLog, type AuditLog } from './audit-log.ts';

export interface KeysCliDeps {
  keys: ApiKeyStore;
  audit: AuditLog;
  out: Writable;
  err: Writable;
  now: () => number;
  /** The audit actor, `cli:<OS user>`. */
  actor: string;
}

const line = (k: ApiKey, now: number) =>
  [
    k.id,
    k.role,
    k.prefix,
    k.revokedAt
      ? `revoked ${k.revokedAt}`
      : k.expiresAt && Date.parse(k.expiresAt) <= now
        ? `expired ${k.expiresAt}`
        : k.expiresAt
          ? `expires ${k.expiresAt}`
          : 'no expiry',
    k.name,
  ].join('\t');

function audit(
  deps: KeysCliDeps,
  change: Omit<AuditRecord, 'actor' | 'actorName' | 'role' | 'requestId' | 'at'>,
) {
  return deps.audit.append({
    actor: deps.actor,
    actorName: deps.actor,
    role: 'admin',
    requestId: null,
    at: new Date(deps.now()).toISOString(),
    ...change,
  });
}

/** `keys create`: prints the secret once, then the key; exit code. */
export async function createKeyCommand(
  deps: KeysCliDeps,
  flags: { role: string; name: string; expires?: string; json?: boolean },
): Promise<number> {
  if (!isRole(flags.role)) {
    deps.err.write(`--role ${flags.role}: not a role; use one of ${ROLES.join(', ')}\n`);
    return 2;
  }
  const now = deps.now();
  let expiresAt: string | null = null;
  try {
    expiresAt = flags.expires === undefined ? null : expiryFrom(flags.expires, now);
  } catch (e) {
    deps.err.write(`--expires: ${errorMessage(e)}\n`);
    return 2;
  }
  const secret = generateToken();
  const key = await deps.keys.put(
    secret,
    { name: flags.name, role: flags.role, expiresAt, createdBy: deps.actor },
    now,
  );
  await audit(deps, { action: 'key.create', target: `key:${key.id}`, before: null, after: key });
  if (flags.json) deps.out.write(`${JSON.stringify({ key, secret })}\n`);
  else
    deps.out.write(
      `${secret}\n\nThe line above is the ${key.role} key "${key.name}" (${key.id}). It is shown only now: keep it in your secret store.\nUse it as \`Authorization: Bearer <key>\`; revoke it with \`lifecycle keys revoke ${key.id}\`.\n`,
    );
  return 0;
}

export async function listKeysCommand(
  deps: KeysCliDeps,
  flags: { json?: boolean },
): Promise<number> {
  const keys = await deps.keys.list();
  const now = deps.now();
  for (const k of keys) deps.out.write(`${flags.json ? JSON.stringify(k) : line(k, now)}\n`);
  return 0;
}

export async function revokeKeyCommand(deps: KeysCliDeps, id: string): Promise<number> {
  const change = await deps.keys.revoke(id, deps.now());
  if (!change) {
    deps.err.write(`no API key ${id}; \`lifecycle keys list\` shows their ids\n`);
    return 1;
  }
  if (change.before.revokedAt === null)
    await audit(deps, {
      action: 'key.revoke',
      target: `key:${id}`,
      before: change.before,
      after: change.after,
    });
  deps.out.write(`${line(change.after, deps.now())}\n`);
  return 0;
}

async function withStores(run: (deps: KeysCliDeps) => Promise<number>): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : errorMessage(err)}\n`);
    process.exitCode = 1;
    return;
  }
  let redis: RedisDeps | undefined;
  try {
    // The same durability check as the API process: a key handed out must survive a Redis crash.
    redis = await openRedis(config, silentLogger());
    process.exitCode = await run({
      keys: createRedisApiKeyStore(redis),
      audit: createRedisAuditLog(redis),
      out: process.stdout,
      err: process.stderr,
      now: Date.now,
      actor: `cli:${userInfo().username}`,
    });
  } catch (err) {
    const code = err instanceof LifecycleError ? `${err.code}: ` : '';
    process.stderr.write(`${code}${errorMessage(err)} (Redis: LC_REDIS_URL)\n`);
    process.exitCode = 1;
  } finally {
    redis?.redis.disconnect();
  }
}

export function register(program: Command): void {
  const keys = program
    .command('keys')
    .description(
      'Staff API keys in the key store of LC_REDIS_URL / LC_REDIS_KEY_PREFIX (the same the API server uses): create one (its secret is printed once), list them, revoke one. Every change is audited.',
    );
  keys
    .command('create')
    .description('Create an API key with a role and print its secret, once.')
    .requiredOption('--role <role>', `the key's role: ${ROLES.join(', ')}`)
    .requiredOption('--name <name>', 'who or what holds it (a person, a service)')
    .option('--expires <when>', 'expiry: a duration from now (30d, 12h, 2w) or an ISO time')
    .option('--json', 'print {key, secret} as one JSON line')
    .action((flags: { role: string; name: string; expires?: string; json?: boolean }) =>
      withStores((deps) => createKeyCommand(deps, flags)),
    );
  keys
    .command('list')
    .description(
      'List every key, newest first: id, role, prefix, state (expiry or revocation), name. Never the secrets.',
    )
    .option('--json', 'one JSON object per key')
    .action((flags: { json?: boolean }) => withStores((deps) => listKeysCommand(deps, flags)));
  keys
    .command('revoke')
    .description('Revoke a key by its id: refused by every API instance from the next request on.')
    .argument('<id>', 'the key id (key_...), as `keys list` shows it')
    .action((id: string) => withStores((deps) => revokeKeyCommand(deps, id)));
}
