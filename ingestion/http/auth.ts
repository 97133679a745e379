// Write keys: configured as `source:key[:client|server]`, kept only as SHA-256 digests, each
// naming the source its events come from and what kind of app holds it. Accepted the three
// ways Segment clients send them.
import { createHash } from 'node:crypto';
import { WRITE_KEY_KINDS, type WriteKeyKind } from '../../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import type { Credential } from '../../platform/http.ts';

/** What a known key says about its caller. */
export interface WriteKeyEntry {
  source: string;
  kind: WriteKeyKind;
}

export interface WriteKeyStore {
  /** The key's source, kind and digest, or undefined when the key is unknown; the digest names the key (rate limits) without its plaintext. */
  lookup(key: string): ({ digest: string } & WriteKeyEntry) | undefined;
  /** The kind of the key with this digest (`client` for a digest not in the table). */
  kindOf(digest: string): WriteKeyKind;
  /** The whole table: SHA-256 digest (base64) of each key -> source and kind. The plaintext keys are not kept. */
  readonly digests: ReadonlyMap<string, WriteKeyEntry>;
  readonly size: number;
}

export const writeKeyDigest = (key: string) => createHash('sha256').update(key).digest('base64');

/**
 * One `source:key` (a client key), `source:key:client` or `source:key:server` entry. A key
 * may itself contain ":"; one that ends in ":client" or ":server" must then be written with
 * its kind. Throws naming the source, never the key.
 */
export function parseWriteKeyEntry(entry: string): WriteKeyEntry & { key: string } {
  const i = entry.indexOf(':');
  const source = entry.slice(0, i).trim();
  let key = entry.slice(i + 1).trim();
  let kind: WriteKeyKind = 'client';
  const j = key.lastIndexOf(':');
  if (j >= 0 && (WRITE_KEY_KINDS as readonly string[]).includes(key.slice(j + 1))) {
    kind = key.slice(j + 1) as WriteKeyKind;
    key = key.slice(0, j).trim();
  }
  if (i <= 0 || key === '')
    throw new Error(
      `write key entry for source "${i > 0 ? source : '?'}" must look like source:key or source:key:client|server`,
    );
  if (!/^[A-Za-z0-9_.-]+$/.test(source))
    throw new Error(
      `write key source name "${source}" may use letters, digits, "_", "-" and "." only`,
    );
  return { source, key, kind };
}

export function parseWriteKeys(entries: readonly string[]): WriteKeyStore {
  const byDigest = new Map<string, WriteKeyEntry>();
  for (const entry of entries) {
    const { source, key, kind } = parseWriteKeyEntry(entry);
    byDigest.set(writeKeyDigest(key), { source, kind });
  }
  return {
    lookup(key) {
      const digest = writeKeyDigest(key);
      const known = byDigest.get(digest);
      return known === undefined ? undefined : { digest, ...known };
    },
    kindOf: (digest) => byDigest.get(digest)?.kind ?? 'client',
    digests: byDigest,
    size: byDigest.size,
  };
}

/**
 * The key from `Authorization: Basic base64(key:)` (Segment's documented scheme),
 * `Authorization: Bearer key`, or the body's `writeKey` (what analytics-node sends).
 */
export function presentedKey(authorization: string | undefined, body: unknown): string | undefined {
  if (authorization) {
    const [scheme, value = ''] = authorization.split(' ', 2);
    if (scheme?.toLowerCase() === 'basic') {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const user = decoded.includes(':') ? decoded.slice(0, decoded.indexOf(':')) : decoded;
      if (user) return user;
    } else if (scheme?.toLowerCase() === 'bearer' && value.trim()) {
      return value.trim();
    }
  }
  if (body && typeof body === 'object' && 'writeKey' in body) {
    const k = (body as { writeKey?: unknown }).writeKey;
    if (typeof k === 'string' && k) return k;
  }
  return undefined;
}

/**
 * The write key as the credential of `writeKey` routes. It may travel in the body, so the
 * kit checks it once the body is parsed and before it is validated: a caller without a
 * known key learns nothing about the schema. 401 without a key, 403 with an unknown one.
 */
export function writeKeyCredential(keys: WriteKeyStore): Credential {
  return {
    schemes: {
      writeKeyBasic: {
        type: 'http',
        scheme: 'basic',
        description: 'Write key as the user name, empty password (Segment).',
      },
      writeKeyBearer: {
        type: 'http',
        scheme: 'bearer',
        description: 'Write key as a bearer token.',
      },
    },
    readsBody: true,
    authenticate(req) {
      const key = presentedKey(req.headers.authorization, req.body);
      if (!key) {
        throw new LifecycleError(
          ErrorCodes.Unauthorized,
          'write key required: HTTP Basic with the write key as user name, a Bearer token, or "writeKey" in the body',
          { status: 401 },
        );
      }
      const known = keys.lookup(key);
      if (!known)
        throw new LifecycleError(ErrorCodes.Forbidden, 'unknown write key', { status: 403 });
      return { id: known.digest, name: known.source };
    },
  };
}
