// The staff credential: whoever calls a staff route presents one bearer token, which is
// the operators' break-glass LC_ADMIN_TOKEN (role admin), an API key of the key store, or
// (when LC_JWT_JWKS_URL is set) a JWT of the identity provider. The role comes with it;
// the HTTP kit then checks it against the route's declared roles.
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { adminTokenPrincipal, bearerToken, type Credential } from '../platform/http.ts';
import { keyRefusal, type ApiKeyStore } from './api-keys.ts';
import { looksLikeJwt, type JwtVerifier } from './jwt.ts';

export interface StaffCredentialDeps {
  /** LC_ADMIN_TOKEN; empty: not accepted. */
  adminToken: string;
  keys: ApiKeyStore;
  jwt?: JwtVerifier;
  now?: () => number;
}

export function staffCredential(deps: StaffCredentialDeps): Credential {
  const now = deps.now ?? Date.now;
  const accepted = `a staff API key (\`lifecycle keys create\`)${deps.jwt ? ', a JWT of your identity provider' : ''} or LC_ADMIN_TOKEN`;
  return {
    schemes: {
      staffKey: {
        type: 'http',
        scheme: 'bearer',
        description: `${accepted[0]!.toUpperCase()}${accepted.slice(1)}, as \`Authorization: Bearer <token>\`. The route's \`x-roles\` lists the roles it admits.`,
      },
    },
    challenge: 'Bearer',
    async authenticate(req) {
      const token = bearerToken(req.headers.authorization);
      if (token === undefined)
        throw new LifecycleError(
          ErrorCodes.Unauthorized,
          `send ${accepted} as \`Authorization: Bearer <token>\``,
        );
      const admin = adminTokenPrincipal(token, deps.adminToken);
      if (admin) return admin;
      if (deps.jwt && looksLikeJwt(token)) return deps.jwt(token);
      const key = await deps.keys.byToken(token);
      if (!key)
        throw new LifecycleError(
          ErrorCodes.Unauthorized,
          `the bearer token is not a known API key${deps.jwt ? ' or a JWT' : ''}: send ${accepted}`,
        );
      const refusal = keyRefusal(key, now());
      if (refusal) throw refusal;
      return {
        id: key.id,
        name: key.name,
        role: key.role,
        via: 'key',
        ...(key.expiresAt !== null ? { expiresAt: key.expiresAt } : {}),
      };
    },
  };
}
