// The HTTP kit every fastify server of the product is built with. Each route names in its
// options what its caller must present (`config: { auth: { roles: ['admin', 'analyst'] } }`
// for staff, `'writeKey'`, `'appUser'`, or `'public'`); one hook checks that credential and
// refuses with a coded 401 (who are you?) or 403 (your role may not do this), and the
// route's OpenAPI `security` and `x-roles` follow from the same declaration, as do the
// refusals the kit makes on it, documented and serialized with the server's one error
// schema (`CodedError`): a route adds only its summary, tags and own answers. Routes that
// change something record it with `req.audit(...)`, which fills in who, with which role,
// in which request and when. A route that names nothing is refused when it is
// registered, so a forgotten declaration fails the server's start-up instead of serving
// without auth. One error handler and one not-found handler answer `{ code, message }` and
// never echo what the request carried (tracking tokens travel in `?t=`); `/health`,
// `/metrics` and `/openapi.json` are served the same way on every server, workers included.
// Every answer carries the security headers (a strict Content-Security-Policy that an HTML
// page widens only by the hashes of its own inline code), and which proxies may speak for
// the client (`X-Forwarded-For`) is one setting, LC_TRUST_PROXY, read by `proxyTrust`. Given
// the process's metrics registry, the kit times every answer by route pattern and status
// (`lifecycle_http_request_seconds`), so every server's latency is measured alike.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import swagger from '@fastify/swagger';
import Fastify from 'fastify';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  preValidationHookHandler,
  RouteOptions,
} from 'fastify';
import { proxyTrust } from './config.ts';
import { ERROR_CODES, ErrorCodes, LifecycleError, type ErrorCode } from './errors.ts';
import { Histogram, healthStatus, type HealthReport, type Registry } from './metrics.ts';
import { API_CONTENT_SECURITY_POLICY, SECURITY_HEADERS } from './security-headers.ts';

export { API_CONTENT_SECURITY_POLICY, SECURITY_HEADERS };

/**
 * The staff roles. `admin` may do everything (it is admitted by every staff route without
 * being listed); `marketer` templates, campaigns, reading rules, test sends; `analyst`
 * dashboards and analytics; `support` user lookup, preferences, resends; `service` the
 * product backend's calls (send API, ingest-side admin calls).
 */
export const ROLES = ['admin', 'marketer', 'analyst', 'support', 'service'] as const;
export type Role = (typeof ROLES)[number];

/**
 * What a route can require of its caller, as one word: nothing (`public`: pages, signed
 * links and webhooks that check their own signature), an ingest write key, or an in-app
 * client token; `admin` is short for `{ roles: ['admin'] }`. Staff routes name the roles
 * they admit (`{ roles: ['analyst'] }`); each role is proven by the `staff` credential
 * (the admin token, an API key or a JWT), so routes name who may call them, never how the
 * caller is checked.
 */
export const ACCESS = ['public', 'admin', 'writeKey', 'appUser'] as const;
export type Access = (typeof ACCESS)[number] | { roles: readonly Role[] };
/** The credentials a server can check: staff (roles), ingest write keys, in-app client tokens. */
export type CredentialKind = 'staff' | 'writeKey' | 'appUser';

/**
 * Who a credential identified: `id` is stable and never a secret (a key's id, a JWT
 * subject, a userId); `name` is for logs and labels; `role` is set by staff credentials.
 */
export interface Principal {
  id: string;
  name: string;
  role?: Role;
  /** Staff credentials: what proved the role (an API key, a JWT, the admin token). */
  via?: 'key' | 'jwt' | 'token';
  /** When the credential stops working (ISO time), if it does. */
  expiresAt?: string;
}

/** One change, as a route describes it to `req.audit`; who made it and when the kit adds. */
export interface AuditChange {
  /** What was done, `<thing>.<verb>`: `key.create`, `template.publish`. */
  action: string;
  /** What it was done to: `key:<id>`, `template:<name>`. */
  target: string;
  /** The target before and after, without secrets (fields named like one are redacted anyway). */
  before?: unknown;
  after?: unknown;
}

/** An audit record as the audit log keeps it. */
export interface AuditRecord {
  /** Who: the principal's id (`key_...`, `admin-token`, `jwt:<sub>`, `cli:<user>`). */
  actor: string;
  actorName: string;
  role: Role | null;
  action: string;
  target: string;
  before: unknown;
  after: unknown;
  requestId: string | null;
  /** ISO time of the change. */
  at: string;
}

/** Where the kit writes audit records (access/audit-log.ts: Redis stream, or memory in the demo). */
export interface AuditSink {
  append(record: AuditRecord): Promise<string>;
}

/** Field names whose values never enter an audit record. */
const SECRET_FIELD = /secret|token|password|passphrase|private|credential|apikey/i;

/** A copy of `value` with every field named like a secret replaced by `[redacted]`. */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [
        k,
        SECRET_FIELD.test(k) ? '[redacted]' : redactSecrets(v),
      ]),
    );
  }
  return value;
}

/** The roles a route admits, admin always among them; null for the non-staff words. */
export function rolesOf(access: Access): readonly Role[] | null {
  if (access === 'admin') return ['admin'];
  if (typeof access === 'string') return null;
  return ['admin', ...access.roles.filter((r) => r !== 'admin')];
}

/** An OpenAPI 3.0 security scheme. */
export type SecurityScheme =
  | { type: 'http'; scheme: 'bearer' | 'basic'; description?: string }
  | { type: 'apiKey'; in: 'header' | 'query' | 'cookie'; name: string; description?: string };

/** How one kind of credential is presented and checked. */
export interface Credential {
  /** The OpenAPI schemes it may be presented with; a route documents any one of them as enough. */
  schemes: Record<string, SecurityScheme>;
  /**
   * True when it may travel in the body (a write key): checked once the body is parsed,
   * still before it is validated, so a stranger learns nothing about the schema.
   */
  readsBody?: boolean;
  /** `WWW-Authenticate` sent with its 401. */
  challenge?: string;
  /** The caller, or throws the coded refusal (a LifecycleError, 401 or 403). */
  authenticate(req: FastifyRequest): Principal | Promise<Principal>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What the caller must present (platform/http.ts); a route without it is refused at registration. */
    auth?: Access;
  }
  interface FastifyRequest {
    /** Who the route's credential identified; null on public routes. */
    principal: Principal | null;
    /** Records a change this request made in the server's audit log (platform/http.ts). */
    audit(change: AuditChange): Promise<void>;
  }
}

/** A refusal as the error handler sends it. */
export interface HttpFailure {
  status: number;
  code: ErrorCode;
  message: string;
  /** The field at fault, as a dotted path into the body. */
  field?: string;
  details?: Record<string, unknown>;
}

export interface HttpKitOptions {
  /** Credentials this server checks; rooms that own one may add it later with `provideCredential`. */
  credentials?: Partial<Record<CredentialKind, Credential>>;
  /**
   * Registers the OpenAPI document (served at /openapi.json by `operationalRoutes`). What
   * every operation shares comes from the kit: security from the route's declared access
   * (the schemes of the credentials provided; `[]` on public routes), the standard refusals
   * (`KIT_ERROR_RESPONSES`) with the one error schema, the product's license, and this
   * server as the document's server.
   */
  openapi?: OpenApiInfo;
  /** The body of every refusal; by default `{ code, message }`, with `field` when one is at fault. */
  failureBody?: (failure: HttpFailure) => unknown;
  /**
   * The JSON Schema of what `failureBody` returns (required with it): every refusal is
   * serialized and documented with it, as `#/components/schemas/CodedError`.
   */
  failureSchema?: Record<string, unknown>;
  /** Sees each refusal the error handler sends, before it is sent (metrics, retry headers). */
  onFailure?: (failure: HttpFailure, req: FastifyRequest, reply: FastifyReply) => void;
  /** What a 415 asks the client to send instead. */
  mediaTypeHint?: string;
  /** The audit log `req.audit` writes to; without it `req.audit` fails (a server that changes things needs one). */
  audit?: AuditSink;
  /** The clock of audit records. */
  now?: () => number;
  /** The process's registry: every answer is timed in `lifecycle_http_request_seconds`. */
  metrics?: Registry;
}

/** What a server says about itself in its OpenAPI document. */
export interface OpenApiInfo {
  info: {
    title: string;
    version: string;
    description?: string;
    /** The product's license (`PRODUCT_LICENSE`) unless given. */
    license?: { name: string; url: string };
  };
  /** The tags the server's operations use, each with what it groups. */
  tags?: readonly { name: string; description: string }[];
}

/** The license of every document the product publishes (package.json's). */
export const PRODUCT_LICENSE = {
  name: 'Apache-2.0',
  url: 'https://www.apache.org/licenses/LICENSE-2.0',
} as const;

/** The id (fastify `$ref: 'CodedError#'`) and OpenAPI component name of a server's refusal body. */
export const ERROR_SCHEMA_ID = 'CodedError';

/**
 * The refusal body the kit answers by default (`{ code, message, field? }`), and the one
 * schema every documented 4xx/5xx of a server refers to. `details` is there for routes that
 * send more about a refusal (a template that does not render).
 */
export const CODED_ERROR_SCHEMA = {
  type: 'object',
  description:
    'A refusal: `code` is a stable LC_ERR_ code a program can act on (each is listed with its status and meaning in platform/errors.ts); `message` says what was wrong and what to do.',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string', enum: Object.keys(ERROR_CODES) },
    message: { type: 'string', description: 'What was wrong, and what to send instead.' },
    field: {
      type: 'string',
      description: 'The field at fault, as a dotted path into the request (`batch[2].event`).',
    },
    details: {
      type: 'object',
      additionalProperties: true,
      description: 'More about the refusal, where the route has more to say.',
    },
  },
} as const;

/**
 * A refusal a route documents itself (its own 404, a 422): the server's coded error body,
 * with what the status means on this route. Statuses the kit documents (`KIT_ERROR_RESPONSES`)
 * need not be repeated; a route that does replaces the kit's description with its own.
 */
export function errorResponse(
  description: string,
  headers?: Record<string, { type: string; description: string; [k: string]: unknown }>,
) {
  return {
    description,
    ...(headers ? { headers } : {}),
    content: { 'application/json': { schema: { $ref: `${ERROR_SCHEMA_ID}#` } } },
  };
}

/**
 * The refusals the kit itself makes, documented on every operation they can happen to:
 * `all` (a malformed request, a fault), `credential` (routes that take one), `staff`
 * (routes that admit roles), `body` (routes that read a body: POST, PUT, PATCH).
 */
export const KIT_ERROR_RESPONSES = {
  all: {
    400: 'The request is malformed or a value is invalid (LC_ERR_BAD_REQUEST): `message` and `field` name the field at fault.',
    500: 'A fault of the service (LC_ERR_INTERNAL); what went wrong is in its log, never in the answer.',
  },
  credential: {
    401: 'No credential of a kind this operation takes (its `security`), or one that is not valid (LC_ERR_UNAUTHORIZED).',
    403: 'The credential is well formed but not known (LC_ERR_FORBIDDEN).',
  },
  staff: {
    401: 'No staff credential, or one that is not valid (LC_ERR_UNAUTHORIZED); an API key past its expiry (LC_ERR_KEY_EXPIRED) or revoked (LC_ERR_KEY_REVOKED).',
    403: "The credential's role may not call this operation (LC_ERR_ROLE_FORBIDDEN; `x-roles` lists the roles that may), or a JWT names no role (LC_ERR_FORBIDDEN).",
  },
  body: {
    413: 'The body is larger than the limit of this operation (LC_ERR_PAYLOAD_TOO_LARGE; the message says the limit).',
    415: 'The body is in a Content-Type (or Content-Encoding) this operation does not read (LC_ERR_UNSUPPORTED_MEDIA_TYPE; the message says what to send).',
  },
} as const;

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** `get` + `/v1/users/:userId/preferences` -> `getV1UsersUserIdPreferences`: an operationId for a route that gives none. */
export function defaultOperationId(method: string, url: string): string {
  const words = url
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1));
  return `${method.toLowerCase()}${words.join('')}`;
}

interface KitState {
  credentials: Map<CredentialKind, Credential>;
  /** The server's refusal body and observer, for refusals made outside the error handler. */
  body: (failure: HttpFailure) => unknown;
  onFailure?: (failure: HttpFailure, req: FastifyRequest, reply: FastifyReply) => void;
  /** Shared with the OpenAPI document, which reads it when first generated. */
  schemes: Record<string, SecurityScheme>;
}

/** What an HTML page may do beyond showing its own markup. */
export interface PagePolicy {
  /** The text of each inline `<script>` element, from the page's code, never from a request. */
  scripts?: readonly string[];
  /** The text of each inline `<style>` element, likewise. Style attributes stay refused. */
  styles?: readonly string[];
  /** The page calls the server it came from (fetch). */
  connectSelf?: boolean;
  /** The page's forms post to the server it came from. */
  formsSelf?: boolean;
}

const sourceHash = (text: string) =>
  `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/**
 * The Content-Security-Policy of an HTML page: inline code runs only when it is the code
 * the page was written with (its hash), so markup injected into a page runs nothing.
 */
export function pageSecurityPolicy(page: PagePolicy): string {
  const hashes = (texts: readonly string[] | undefined) =>
    texts && texts.length > 0 ? texts.map(sourceHash).join(' ') : "'none'";
  return [
    "default-src 'none'",
    `script-src ${hashes(page.scripts)}`,
    `style-src ${hashes(page.styles)}`,
    "img-src 'self' data:",
    `connect-src ${page.connectSelf ? "'self'" : "'none'"}`,
    `form-action ${page.formsSelf ? "'self'" : "'none'"}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
}

/** The text of each inline `<script>` and `<style>` element of a page file the product ships. */
export function inlineElements(html: string): { scripts: string[]; styles: string[] } {
  const texts = (tag: string) =>
    [...html.matchAll(new RegExp(`<${tag}(?![^>]*\\bsrc=)[^>]*>([\\s\\S]*?)</${tag}>`, 'gi'))].map(
      (m) => m[1]!,
    );
  return { scripts: texts('script'), styles: texts('style') };
}

/**
 * Options the kit needs when the server is constructed, from the one config: spread them
 * into `Fastify({...})`. `trustProxy` from LC_TRUST_PROXY (a hop count as a function:
 * fastify reads a bare number as trusting nobody); `frameworkErrors` so that a request
 * fastify refuses before any hook (a malformed URL) is answered like every other refusal,
 * security headers and coded body included.
 */
export function httpServerOptions(http: { trustProxy: string }): {
  trustProxy: boolean | string[] | ((address: string, hop: number) => boolean);
  genReqId: () => string;
  frameworkErrors: (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => void;
} {
  const trust = proxyTrust(http.trustProxy);
  return {
    trustProxy: typeof trust === 'number' ? (_address, hop) => hop < trust : trust,
    // Request ids unique across instances and restarts: audit records and logs name them.
    genReqId: () => randomUUID(),
    frameworkErrors(err, req, reply) {
      const status = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400;
      const failure: HttpFailure =
        status === 414
          ? {
              status,
              code: ErrorCodes.BadRequest,
              message: 'a path segment of the URL is too long',
            }
          : err.code === 'FST_ERR_BAD_URL'
            ? {
                status,
                code: ErrorCodes.BadRequest,
                message: 'the URL path is not valid (malformed percent-encoding)',
              }
            : { status, code: ErrorCodes.BadRequest, message: 'bad request' };
      void reply.headers(SECURITY_HEADERS);
      const state = kitOf(req.server);
      state?.onFailure?.(failure, req, reply);
      void reply.code(status).send((state?.body ?? defaultBody)(failure));
    },
  };
}

// One histogram per registry: `lifecycle run all` builds the ingest and API servers on one.
const requestHistograms = new WeakMap<Registry, Histogram<'method' | 'route' | 'status_code'>>();

/** The request-duration histogram of a registry, registered on first use. */
function requestHistogram(registry: Registry): Histogram<'method' | 'route' | 'status_code'> {
  let histogram = requestHistograms.get(registry);
  if (!histogram) {
    histogram = new Histogram({
      name: 'lifecycle_http_request_seconds',
      help: 'HTTP requests answered, by method, route pattern (`unmatched` for a path no route serves) and status code, and how long each took to answer.',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    requestHistograms.set(registry, histogram);
  }
  return histogram;
}

const KIT = Symbol.for('lifecycle.httpKit');
const kitOf = (app: FastifyInstance): KitState | undefined =>
  (app as unknown as { [KIT]?: KitState })[KIT];

const defaultBody = (f: HttpFailure) =>
  f.field === undefined
    ? { code: f.code, message: f.message }
    : { code: f.code, message: f.message, field: f.field };

/**
 * Installs the kit on a new server, before any route: the access check of every route,
 * the error and not-found handlers, and (with `openapi`) the OpenAPI document.
 */
export async function setupHttpKit(app: FastifyInstance, opts: HttpKitOptions = {}): Promise<void> {
  if (kitOf(app)) throw new Error('the HTTP kit is already set up on this server');
  if (opts.failureBody && !opts.failureSchema)
    throw new Error(
      'give setupHttpKit a failureSchema with its failureBody: refusals are serialized and documented with it',
    );
  // Before any route: every route's refusals refer to it (`errorResponse`), in every scope.
  app.addSchema({ ...(opts.failureSchema ?? CODED_ERROR_SCHEMA), $id: ERROR_SCHEMA_ID });
  const state: KitState = {
    credentials: new Map(),
    schemes: {},
    body: opts.failureBody ?? defaultBody,
    ...(opts.onFailure ? { onFailure: opts.onFailure } : {}),
  };
  app.decorate(KIT, state);
  app.decorateRequest('principal', null);
  // First of all hooks, so a refusal, a miss or an error answers with them too; a page
  // replaces the Content-Security-Policy with its own.
  app.addHook('onRequest', async (req, reply) => {
    void reply.headers(SECURITY_HEADERS);
    void reply.header('x-request-id', req.id);
  });
  if (opts.metrics) {
    const requests = requestHistogram(opts.metrics);
    // The route's pattern, never the URL: paths carry ids and tokens, and one series per
    // distinct URL would grow without bound.
    app.addHook('onResponse', (req, reply, done) => {
      requests.observe(
        {
          method: req.method,
          route: req.routeOptions.url ?? 'unmatched',
          status_code: String(reply.statusCode),
        },
        reply.elapsedTime / 1000,
      );
      done();
    });
  }
  for (const [kind, credential] of Object.entries(opts.credentials ?? {}) as [
    CredentialKind,
    Credential,
  ][])
    provideCredential(app, kind, credential);

  app.decorateRequest('audit', async function (this: FastifyRequest, change: AuditChange) {
    if (!opts.audit)
      throw new Error(
        'this server has no audit log: give setupHttpKit an `audit` sink before routes that change things',
      );
    const p = this.principal;
    await opts.audit.append({
      actor: p?.id ?? 'anonymous',
      actorName: p?.name ?? 'anonymous',
      role: p?.role ?? null,
      action: change.action,
      target: change.target,
      before: redactSecrets(change.before ?? null),
      after: redactSecrets(change.after ?? null),
      requestId: this.id ?? null,
      at: new Date((opts.now ?? Date.now)()).toISOString(),
    });
  });

  app.addHook('onRoute', (route) => {
    const access = route.config?.auth;
    const where = `${String(route.method)} ${route.url}`;
    if (access === undefined) {
      throw new Error(
        `route ${where} declares no access: give it config.auth, one of ${ACCESS.join(', ')} or { roles: [...] } (${ROLES.join(', ')})`,
      );
    }
    if (typeof access === 'string' && !(ACCESS as readonly string[]).includes(access))
      throw new Error(
        `route ${where} declares unknown access "${String(access)}" (one of ${ACCESS.join(', ')} or { roles: [...] })`,
      );
    if (typeof access === 'object') {
      const roles = (access as { roles?: unknown }).roles;
      if (!Array.isArray(roles) || roles.length === 0)
        throw new Error(`route ${where} declares { roles } without any role (${ROLES.join(', ')})`);
      const unknown = roles.filter((r) => !(ROLES as readonly unknown[]).includes(r));
      if (unknown.length > 0)
        throw new Error(
          `route ${where} declares unknown role(s) ${unknown.join(', ')} (one of ${ROLES.join(', ')})`,
        );
    }
    if (access === 'public') {
      route.schema = documented(route, [], null);
      return;
    }
    const roles = rolesOf(access);
    const kind: CredentialKind = roles ? 'staff' : (access as CredentialKind);
    const credential = state.credentials.get(kind);
    if (!credential)
      throw new Error(
        `route ${where} requires ${roles ? `the roles ${roles.join(', ')}` : kind}, which this server does not check: provide its ${kind} credential first`,
      );
    route.schema = documented(
      route,
      Object.keys(credential.schemes).map((name) => ({ [name]: [] })),
      roles,
    );
    const check = async (req: FastifyRequest, reply: FastifyReply) => {
      try {
        req.principal = await credential.authenticate(req);
      } catch (err) {
        if (credential.challenge && err instanceof LifecycleError && err.status === 401)
          void reply.header('www-authenticate', credential.challenge);
        throw err;
      }
      if (roles && !(req.principal.role && roles.includes(req.principal.role))) {
        throw new LifecycleError(
          ErrorCodes.RoleForbidden,
          `this route is for the role(s) ${roles.join(', ')}; the credential presented has ${req.principal.role ? `the role ${req.principal.role}` : 'no role'}: use a key of one of those roles`,
          { details: { roles: [...roles], role: req.principal.role ?? null } },
        );
      }
    };
    // First among the route's own hooks: nothing of the route runs for a caller it refuses.
    if (credential.readsBody)
      route.preValidation = [check as preValidationHookHandler, ...hooks(route.preValidation)];
    else route.onRequest = [check as onRequestHookHandler, ...hooks(route.onRequest)];
  });

  const body = opts.failureBody ?? defaultBody;
  app.setErrorHandler((err, req, reply) => {
    const failure = describeFailure(err, req, opts.mediaTypeHint);
    // 503 is the expected answer while a dependency is down: logged where it is noticed, not per request.
    if (failure.status >= 500 && failure.status !== 503) req.log.error({ err }, 'request failed');
    opts.onFailure?.(failure, req, reply);
    return reply.code(failure.status).send(body(failure));
  });
  // fastify's own 404 logs and echoes the whole URL; a mistyped tracking link carries its
  // signed token in the query, so a miss is logged and answered with the path only.
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0];
    req.log.info({ path }, 'route not found');
    return reply.code(404).send(
      body({
        status: 404,
        code: ErrorCodes.NotFound,
        message: `Route ${req.method}:${path} not found`,
      }),
    );
  });

  if (opts.openapi) {
    const { info, tags = [] } = opts.openapi;
    await app.register(swagger, {
      openapi: {
        info: { ...info, license: info.license ?? PRODUCT_LICENSE },
        // The document is served by the server it describes: its operations are relative to it.
        servers: [{ url: '/', description: 'The server that serves this document.' }],
        tags: [...tags, OPERATIONS_TAG],
        components: { securitySchemes: state.schemes },
      },
      // Validation speaks JSON Schema (a numeric exclusiveMinimum); the document, OpenAPI 3.0.
      transformObject: (doc) =>
        openapi30Bounds('openapiObject' in doc ? doc.openapiObject : doc.swaggerObject) as never,
      // Shared schemas (`CodedError`) keep their names in components.schemas.
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) =>
          typeof json.$id === 'string' ? json.$id : `def-${i}`,
      },
    });
  }
}

/**
 * JSON Schema's numeric `exclusiveMinimum: 0` in OpenAPI 3.0's words (`minimum: 0,
 * exclusiveMinimum: true`), everywhere in the document: route schemas are validated as JSON
 * Schema, and the same schema must document them.
 */
export function openapi30Bounds<T>(node: T): T {
  if (Array.isArray(node)) {
    for (const item of node) openapi30Bounds(item);
  } else if (node !== null && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    for (const [bound, flag] of [
      ['minimum', 'exclusiveMinimum'],
      ['maximum', 'exclusiveMaximum'],
    ] as const) {
      if (typeof o[flag] === 'number') {
        o[bound] = o[flag];
        o[flag] = true;
      }
    }
    for (const value of Object.values(o)) openapi30Bounds(value);
  }
  return node;
}

const OPERATIONS_TAG = {
  name: 'operations',
  description: 'Health, metrics and this document, as every server of the product serves them.',
};

type RouteSchema = NonNullable<RouteOptions['schema']> & {
  response?: Record<string, unknown>;
  operationId?: string;
};

/**
 * The route's schema with what the kit documents for it: its security (`[]`: public), the
 * roles it admits, an operationId when it gives none, and the refusals the kit makes on it,
 * each referring to the server's error schema (a status the route documents itself stays
 * the route's). The refusals are part of the route's response schema, so what is sent is
 * what is documented.
 */
function documented(
  route: RouteOptions,
  security: Record<string, string[]>[],
  roles: readonly Role[] | null,
): RouteSchema {
  const schema = (route.schema ?? {}) as RouteSchema;
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  const refusals: Record<string, string> = {
    ...KIT_ERROR_RESPONSES.all,
    ...(security.length > 0
      ? roles
        ? KIT_ERROR_RESPONSES.staff
        : KIT_ERROR_RESPONSES.credential
      : {}),
    ...(methods.some((m) => BODY_METHODS.has(String(m))) ? KIT_ERROR_RESPONSES.body : {}),
  };
  const response: Record<string, unknown> = { ...schema.response };
  for (const [status, description] of Object.entries(refusals)) {
    const own = (response[status] ?? response[`${status[0]}xx`]) as
      { description?: string; content?: Record<string, unknown> } | undefined;
    if (own === undefined) response[status] = errorResponse(description);
    // A page's own answer of this status (HTML, an image): the kit's refusals of it are still JSON.
    else if (own.content && !own.content['application/json'])
      response[status] = {
        ...own,
        description: `${own.description ?? ''} As JSON: ${description}`.trim(),
        content: { ...own.content, ...errorResponse(description).content },
      };
  }
  return {
    ...schema,
    operationId: schema.operationId ?? defaultOperationId(String(methods[0]), route.url),
    security,
    ...(roles ? { 'x-roles': [...roles] } : {}),
    response,
  };
}

const hooks = <T>(h: T | T[] | undefined): T[] =>
  h === undefined ? [] : Array.isArray(h) ? h : [h];

/**
 * Adds the credential of one kind to the server (a room that owns a credential, as the
 * in-app gateway its client tokens, provides it before registering its routes).
 */
export function provideCredential(
  app: FastifyInstance,
  kind: CredentialKind,
  credential: Credential,
): void {
  const state = requireHttpKit(app);
  if (state.credentials.has(kind)) throw new Error(`this server already checks ${kind}`);
  state.credentials.set(kind, credential);
  Object.assign(state.schemes, credential.schemes);
}

/**
 * For route plugins: routes declare their access, so a server without the kit would serve
 * them without any check; this refuses to register them there instead.
 */
export function requireHttpKit(app: FastifyInstance): KitState {
  const state = kitOf(app);
  if (!state)
    throw new Error(
      'these routes declare their access and need the HTTP kit: call setupHttpKit (platform/http.ts) on the server first',
    );
  return state;
}

const HEALTH_REPORT_SCHEMA = {
  type: 'object',
  required: ['ok'],
  additionalProperties: true,
  properties: { ok: { type: 'boolean', description: 'Whether the process can do its work.' } },
  description: 'The HealthReport: `ok`, and what the process knows about its dependencies.',
} as const;

/**
 * `/health` (its HealthReport, 503 when not ok), `/metrics` and `/openapi.json`: public,
 * and in the document like every route (tag `operations`).
 */
export function operationalRoutes(
  app: FastifyInstance,
  deps: { metrics: Pick<Registry, 'metrics' | 'contentType'>; health: () => HealthReport },
): void {
  const config = { auth: 'public' as const };
  const tags = [OPERATIONS_TAG.name];
  app.get(
    '/health',
    {
      config,
      schema: {
        operationId: 'getHealth',
        summary: 'Whether this process can do its work (load balancers and orchestrators ask)',
        tags,
        response: {
          200: { ...HEALTH_REPORT_SCHEMA, description: 'The process is healthy.' },
          503: {
            ...HEALTH_REPORT_SCHEMA,
            description: 'The process cannot do its work now; the report says what is down.',
          },
        },
      },
    },
    async (_req, reply) => {
      const report = deps.health();
      return reply.code(healthStatus(report)).send(report);
    },
  );
  app.get(
    '/metrics',
    {
      config,
      schema: {
        operationId: 'getMetrics',
        summary: "The process's Prometheus metrics",
        tags,
        response: {
          200: {
            description: 'Prometheus text exposition format.',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
        },
      },
    },
    async (_req, reply) =>
      reply.header('content-type', deps.metrics.contentType).send(await deps.metrics.metrics()),
  );
  if (app.hasDecorator('swagger'))
    app.get(
      '/openapi.json',
      {
        config,
        schema: {
          operationId: 'getOpenApiDocument',
          summary: 'This document: the OpenAPI 3.0 description of every operation of this server',
          tags,
          response: {
            200: {
              type: 'object',
              additionalProperties: true,
              description: 'The OpenAPI document.',
            },
          },
        },
      },
      async () => app.swagger(),
    );
}

/**
 * The endpoint of a process without a server of its own (engine, delivery, scheduler, sink
 * workers, on LC_METRICS_PORT): `/health`, `/metrics` and `/openapi.json` on the kit, so a
 * miss or a refusal answers like every server's (coded, with the security headers). Not
 * listening yet: `serveOperational` listens.
 */
export async function createOperationalServer(deps: {
  metrics: Pick<Registry, 'metrics' | 'contentType'>;
  health: () => HealthReport;
}): Promise<FastifyInstance> {
  // Scrapers and probes name no client worth a proxy setting: nobody speaks for them.
  const app = Fastify(httpServerOptions({ trustProxy: 'false' }));
  await setupHttpKit(app, {
    openapi: {
      info: {
        title: 'Lifecycle worker endpoint',
        version: '1',
        description:
          'What a worker process (engine, delivery, scheduler, sink) serves on LC_METRICS_PORT: its health and its Prometheus metrics.',
      },
    },
  });
  operationalRoutes(app, deps);
  return app;
}

/** `createOperationalServer`, listening on `port` of `host`. */
export async function serveOperational(
  opts: { port: number; host: string },
  deps: Parameters<typeof createOperationalServer>[0],
): Promise<FastifyInstance> {
  const app = await createOperationalServer(deps);
  await app.listen({ port: opts.port, host: opts.host });
  return app;
}

/**
 * The operators' admin token (LC_ADMIN_TOKEN) as `Authorization: Bearer <token>`: the
 * break-glass staff credential, role admin. Servers with API keys and JWTs use the staff
 * credential of access/ (which accepts this token too); this one alone serves tests and
 * servers without a key store.
 */
export function adminCredential(token: string): Credential {
  return {
    schemes: {
      adminToken: {
        type: 'http',
        scheme: 'bearer',
        description: 'The admin token (LC_ADMIN_TOKEN).',
      },
    },
    challenge: 'Bearer',
    authenticate(req) {
      const presented = bearerToken(req.headers.authorization);
      const principal = presented === undefined ? null : adminTokenPrincipal(presented, token);
      if (!principal) {
        throw new LifecycleError(
          ErrorCodes.Unauthorized,
          'send the admin token as `Authorization: Bearer <LC_ADMIN_TOKEN>`',
        );
      }
      return principal;
    },
  };
}

/** The break-glass admin, when `presented` is the admin token (never when the token is unset). */
export function adminTokenPrincipal(presented: string, token: string): Principal | null {
  if (token === '' || !secretEquals(presented, token)) return null;
  return { id: 'admin-token', name: 'LC_ADMIN_TOKEN', role: 'admin', via: 'token' };
}

/** The token of `Authorization: Bearer <token>`, or undefined. */
export function bearerToken(authorization: string | undefined): string | undefined {
  const m = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
  const token = m?.[1]!.trim();
  return token ? token : undefined;
}

/** Compares a presented secret in constant time, its length included (both sides are hashed first). */
export function secretEquals(presented: string, expected: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

type AjvError = {
  instancePath: string;
  message?: string;
  keyword: string;
  params: Record<string, unknown>;
};

/** The first Ajv error as (field, message), the field a dotted path into the document (`batch[2].event`). */
export function describeValidation(
  errors: readonly AjvError[],
  prefix = '',
): { field: string; message: string } {
  const e = errors[0];
  if (!e) return { field: prefix || 'body', message: 'invalid' };
  const path = e.instancePath
    .split('/')
    .filter(Boolean)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join('');
  let field = `${prefix}${path}`.replace(/^\./, '');
  let message = e.message ?? 'is invalid';
  if (e.keyword === 'required') {
    field = `${field ? `${field}.` : ''}${String(e.params.missingProperty)}`;
    message = 'is required';
  }
  // Ajv says "must be equal to one of the allowed values": name them, so the caller knows what to send.
  if (e.keyword === 'enum' && Array.isArray(e.params.allowedValues))
    message = `must be one of ${e.params.allowedValues.map(String).join(', ')}`;
  // "must NOT have additional properties": name the one.
  if (e.keyword === 'additionalProperties' && typeof e.params.additionalProperty === 'string')
    message = `must not have the field ${e.params.additionalProperty}`;
  if (!field) field = 'body';
  return { field, message: `${field} ${message}` };
}

/**
 * Any error as the coded refusal it becomes: a LifecycleError as it is; fastify's
 * validation, body size, media type and body parsing errors as coded 4xx; anything else
 * as an internal error whose message stays in the log.
 */
export function describeFailure(
  err: unknown,
  req: FastifyRequest,
  mediaTypeHint = 'send the body as application/json',
): HttpFailure {
  if (err instanceof LifecycleError) {
    const field = err.details?.field;
    return {
      status: err.status,
      code: err.code,
      message: err.message,
      ...(typeof field === 'string' ? { field } : {}),
      ...(err.details ? { details: err.details } : {}),
    };
  }
  const e = err as Partial<FastifyError> & { validation?: AjvError[] };
  if (e.validation)
    return { status: 400, code: ErrorCodes.BadRequest, ...describeValidation(e.validation) };
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    const limit = req.routeOptions.bodyLimit ?? req.server.initialConfig.bodyLimit;
    return {
      status: 413,
      code: ErrorCodes.PayloadTooLarge,
      message: `request body is larger than ${limit} bytes`,
    };
  }
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return { status: 415, code: ErrorCodes.UnsupportedMediaType, message: mediaTypeHint };
  if (e.statusCode && e.statusCode < 500) {
    return {
      status: e.statusCode,
      code: ErrorCodes.BadRequest,
      message: e.code?.startsWith('FST_ERR_CTP')
        ? 'body is not valid JSON'
        : (e.message ?? 'bad request'),
    };
  }
  return { status: 500, code: ErrorCodes.Internal, message: 'internal error' };
}
