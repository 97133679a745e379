// Write keys: configured as `source:key`, kept only as SHA-256 digests, each naming the
// source its events come from. Accepted the three ways Segment clients send them.
import { createHash } from 'node:crypto';
import { ErrorCodes, LifecycleError } from '../../platform/errors.ts';
import type { Credential } from '../../platform/http.ts';

export interface WriteKeyStore {
  /** The key's source and digest, or undefined when the key is unknown; the digest names the key (rate limits) without its plaintext. */
  lookup(key: string): { digest: string; source: string } | undefined;
  /** The whole table: SHA-256 digest (base64) of each key -> source. The plaintext keys are not kept. */
  readonly digests: ReadonlyMap<string, string>;
  readonly size: number;
}

export const writeKeyDigest = (key: string) => createHash('sha256').update(key).digest('base64');

export function parseWriteKeys(entries: readonly string[]): WriteKeyStore {
  const byDigest = new Map<string, string>();
  for (const entry of entries) {
    const i = entry.indexOf(':');
    const source = entry.slice(0, i).trim();
    const key = entry.slice(i + 1).trim();
    if (i <= 0 || key === '')
      throw new Error(
        `write key entry for source "${i > 0 ? source : '?'}" must look like source:key`,
      );
    if (!/^[A-Za-z0-9_.-]+$/.test(source))
      throw new Error(
        `write key source name "${source}" may use letters, digits, "_", "-" and "." only`,
      );
    byDigest.set(writeKeyDigest(key), source);
  }
  return {
    lookup(key) {
      const digest = writeKeyDigest(key);
      const source = byDigest.get(digest);
      return source === undefined ? undefined : { digest, source };
    },
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
