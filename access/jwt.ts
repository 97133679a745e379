// JWT bearer tokens of the organisation's identity provider, verified with jose against its
// JWKS: fixed algorithms (an `alg: none` or an HMAC token signed with a public key is
// refused before any key is tried), a fixed issuer and audience, and the role from one claim.
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { ROLES, type Principal, type Role } from '../platform/http.ts';

/** Asymmetric only: the API holds no signing secret, only the provider's public keys. */
export const JWT_ALGORITHMS = ['RS256', 'ES256'] as const;

export interface JwtOptions {
  jwksUrl: string;
  issuer: string;
  audience: string;
  roleClaim: string;
}

export type JwtVerifier = (token: string) => Promise<Principal>;

/** A compact JWS: three base64url parts, the first a JSON header. */
export const looksLikeJwt = (token: string) => /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/.test(token);

function roleFrom(claim: unknown): Role | undefined {
  const values = Array.isArray(claim) ? claim : [claim];
  return values.find((v): v is Role => (ROLES as readonly unknown[]).includes(v));
}

export function createJwtVerifier(
  opts: JwtOptions,
  keySet: JWTVerifyGetKey = createRemoteJWKSet(new URL(opts.jwksUrl)),
): JwtVerifier {
  return async (token) => {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, keySet, {
        issuer: opts.issuer,
        audience: opts.audience,
        algorithms: [...JWT_ALGORITHMS],
        requiredClaims: ['sub', 'exp'],
      }));
    } catch (err) {
      // jose's messages name the failed check (`"exp" claim timestamp check failed`), never the token.
      const reason = err instanceof Error ? err.message : 'invalid';
      throw new LifecycleError(
        ErrorCodes.Unauthorized,
        `the JWT was refused (${reason}): present a current token of ${opts.issuer} for audience ${opts.audience}, signed ${JWT_ALGORITHMS.join(' or ')}`,
      );
    }
    const role = roleFrom(payload[opts.roleClaim]);
    const sub = String(payload.sub);
    if (!role)
      throw new LifecycleError(
        ErrorCodes.Forbidden,
        `the JWT of ${sub} has no staff role in its "${opts.roleClaim}" claim (one of ${ROLES.join(', ')}); give the user a role in the identity provider`,
      );
    const name = typeof payload.email === 'string' ? payload.email : sub;
    // `exp` is required above, so the token has an end, which the admin pages show.
    const expiresAt = new Date(Number(payload.exp) * 1000).toISOString();
    return { id: `jwt:${sub}`, name, role, via: 'jwt', expiresAt };
  };
}
