// What a write key may vouch for. A client key (browser, mobile app) is readable by anyone
// who opens the app, so its events may not set the traits that decide where messages go or
// what a user is entitled to: those are dropped, the rest of the event is kept. A source
// with an identity secret must also prove, per event, that its userId is the signed-in
// user (an HMAC its backend computed), as Intercom's and Customer.io's identity
// verification do. Server keys are trusted with both.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { NormalisedEvent, WriteKeyKind } from '../../platform/contracts.ts';
import { ErrorCodes } from '../../platform/errors.ts';
import type { MessageType, Rejection, SegmentMessage } from './segment.ts';

/**
 * Traits a client key may never set: the addresses delivery sends to (`email`, `phone`,
 * push `deviceTokens`, `webhookUrl`) and `plan`, which rules read to decide what a user
 * is owed. LC_PROTECTED_TRAITS adds more. Names match case-insensitively.
 */
export const BUILT_IN_PROTECTED_TRAITS: readonly string[] = Object.freeze([
  'email',
  'phone',
  'deviceTokens',
  'webhookUrl',
  'plan',
]);

/** Where a client event carries the proof of its userId: hex HMAC-SHA256 of the userId, keyed with the source's secret. */
export const USER_HASH_FIELD = 'userHash';

/** The shortest identity secret accepted: 128 bits as hex. */
export const MIN_IDENTITY_SECRET_LENGTH = 32;

export interface ClientTrustConfig {
  /** LC_PROTECTED_TRAITS: names added to BUILT_IN_PROTECTED_TRAITS. */
  protectedTraits: readonly string[];
  /** LC_IDENTITY_SECRETS: `source:secret` entries. */
  identitySecrets: readonly string[];
}

/** What a client message may not do, decided per message after it is normalised. */
export interface ClientTrust {
  /**
   * For a client key: checks the identity proof when the source requires one (removing the
   * proof from the stored context), then drops protected traits from the event in place.
   * Returns the names dropped (as their metric labels), or why the message is refused.
   */
  screen(
    source: string,
    kind: WriteKeyKind,
    type: MessageType,
    msg: SegmentMessage,
    event: NormalisedEvent,
  ): string[] | Rejection;
  /** Sources that require identity verification of their client events. */
  readonly verifiedSources: ReadonlySet<string>;
}

/** The proof a product's backend computes for a signed-in user: hex HMAC-SHA256 of the userId. */
export function userHash(secret: string, userId: string): string {
  return createHmac('sha256', secret).update(userId, 'utf8').digest('hex');
}

const NOTHING_DROPPED: string[] = [];

/**
 * Builds the policy from the configuration. `sources` are the write key sources: an
 * identity secret for any other name is a typo that would leave a source unverified.
 */
export function createClientTrust(
  config: ClientTrustConfig,
  sources: ReadonlySet<string>,
): ClientTrust {
  // Lower-cased name -> the metric label: the built-in name, or the configured one as written.
  const protectedNames = new Map<string, string>();
  for (const name of [...BUILT_IN_PROTECTED_TRAITS, ...config.protectedTraits]) {
    const trimmed = name.trim();
    if (trimmed !== '' && !protectedNames.has(trimmed.toLowerCase()))
      protectedNames.set(trimmed.toLowerCase(), trimmed);
  }
  const secrets = parseIdentitySecrets(config.identitySecrets, sources);

  function verify(
    source: string,
    type: MessageType,
    msg: SegmentMessage,
    event: NormalisedEvent,
  ): Rejection | null {
    const secret = secrets.get(source);
    if (secret === undefined) return null;
    const proof = event.context?.[USER_HASH_FIELD];
    if (event.context && USER_HASH_FIELD in event.context) {
      // Proof of identity, not data: it is not stored with the event.
      const { [USER_HASH_FIELD]: _proof, ...rest } = event.context;
      if (Object.keys(rest).length > 0) event.context = rest;
      else delete event.context;
    }
    const userId = msg.userId;
    if (!userId) {
      if (type === 'identify' || type === 'alias')
        return {
          code: ErrorCodes.Unauthorized,
          status: 401,
          field: 'userId',
          message: `source ${source} verifies identities: an anonymous ${type} cannot name a user; send it with the signed-in userId and context.${USER_HASH_FIELD}`,
        };
      return null;
    }
    if (typeof proof !== 'string' || proof === '')
      return {
        code: ErrorCodes.Unauthorized,
        status: 401,
        field: `context.${USER_HASH_FIELD}`,
        message: `source ${source} verifies identities: send context.${USER_HASH_FIELD}, the hex HMAC-SHA256 of the userId keyed with the source's secret (LC_IDENTITY_SECRETS), computed by your backend for the signed-in user`,
      };
    const expected = Buffer.from(userHash(secret, userId), 'utf8');
    const given = Buffer.from(proof.toLowerCase(), 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return {
        code: ErrorCodes.Forbidden,
        status: 403,
        field: `context.${USER_HASH_FIELD}`,
        message: `context.${USER_HASH_FIELD} does not match the userId: compute it on your backend as the hex HMAC-SHA256 of this exact userId with source ${source}'s secret (LC_IDENTITY_SECRETS)`,
      };
    return null;
  }

  function dropProtected(event: NormalisedEvent): string[] {
    const traits = event.traits;
    if (!traits) return NOTHING_DROPPED;
    let dropped: string[] | null = null;
    for (const key of Object.keys(traits)) {
      const label = protectedNames.get(key.toLowerCase());
      if (label === undefined) continue;
      delete traits[key];
      (dropped ??= []).push(label);
    }
    return dropped ?? NOTHING_DROPPED;
  }

  return {
    verifiedSources: new Set(secrets.keys()),
    screen(source, kind, type, msg, event) {
      if (kind === 'server') return NOTHING_DROPPED;
      const refusal = verify(source, type, msg, event);
      if (refusal !== null) return refusal;
      // Only identify traits become user traits in the engine (a group's describe the
      // account and travel in its properties; track properties and context are never merged).
      return dropProtected(event);
    },
  };
}

/** `source:secret` entries of LC_IDENTITY_SECRETS -> secret per source. */
export function parseIdentitySecrets(
  entries: readonly string[],
  sources: ReadonlySet<string>,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of entries) {
    const i = entry.indexOf(':');
    const source = entry.slice(0, i).trim();
    const secret = entry.slice(i + 1).trim();
    if (i <= 0 || secret === '')
      throw new Error(
        `LC_IDENTITY_SECRETS: entry for source "${i > 0 ? source : '?'}" must look like source:secret`,
      );
    if (!sources.has(source))
      throw new Error(
        `LC_IDENTITY_SECRETS: source "${source}" has no write key in LC_WRITE_KEYS (sources: ${[...sources].join(', ') || 'none'})`,
      );
    if (secret.length < MIN_IDENTITY_SECRET_LENGTH)
      throw new Error(
        `LC_IDENTITY_SECRETS: the secret of source "${source}" must be at least ${MIN_IDENTITY_SECRET_LENGTH} characters (for example \`openssl rand -hex 32\`)`,
      );
    out.set(source, secret);
  }
  return out;
}
