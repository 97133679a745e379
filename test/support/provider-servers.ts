// Local servers in the shape of the SMS and push APIs delivery speaks to, for integration
// tests: a Twilio-shaped Messages API that honours its idempotency key and can fail on demand
// (5xx, a reset before or after it stored the message); Google's OAuth token endpoint, which
// verifies the RS256 assertion of a service account with its public key, and an FCM HTTP v1
// send endpoint that takes only the access tokens it issued; an APNs-shaped HTTP/2 server
// that verifies ES256 provider tokens (kid, iss, iat younger than an hour).
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createH2Server, constants, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { decodeProtectedHeader, importSPKI, jwtVerify } from 'jose';

const body = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });

const json = (res: ServerResponse, status: number, value: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
};

async function listen(server: Server | Http2Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const closeServer = (server: Server | Http2Server): Promise<void> =>
  new Promise((resolve) => {
    if ('closeAllConnections' in server) server.closeAllConnections();
    server.close(() => resolve());
  });

/** How the SMS API answers the next create requests. */
export type SmsMode =
  | 'ok'
  /** 503 before anything is stored. */
  | 'unavailable'
  /** The connection is reset before the request is read: nothing stored. */
  | 'reset-before'
  /** The message is stored (and would go out), then the connection is reset: no answer. */
  | 'reset-after';

export interface SmsMessage {
  sid: string;
  to: string;
  from: string;
  body: string;
  idempotencyKey: string | null;
}

export interface SmsServer {
  url: string;
  accountSid: string;
  authToken: string;
  mode: SmsMode;
  /** Messages the API accepted (each goes to a handset once). */
  messages: SmsMessage[];
  /** Create requests received, including replays and failures. */
  requests: number;
  close(): Promise<void>;
}

/** A Twilio-shaped Messages API: Basic auth, form body, replays of an idempotency key answer with the stored message. */
export async function startSmsServer(opts: {
  accountSid: string;
  authToken: string;
}): Promise<SmsServer> {
  const byKey = new Map<string, SmsMessage>();
  const state: Omit<SmsServer, 'url' | 'close'> = {
    accountSid: opts.accountSid,
    authToken: opts.authToken,
    mode: 'ok',
    messages: [],
    requests: 0,
  };
  const auth = `Basic ${Buffer.from(`${opts.accountSid}:${opts.authToken}`).toString('base64')}`;
  const server = createServer((req, res) => {
    if (
      req.method !== 'POST' ||
      req.url !== `/2010-04-01/Accounts/${opts.accountSid}/Messages.json`
    )
      return json(res, 404, { code: 20404, message: 'not found' });
    state.requests++;
    if (state.mode === 'reset-before') return req.socket.destroy();
    void body(req).then((text) => {
      if (req.headers.authorization !== auth)
        return json(res, 401, { code: 20003, message: 'Authenticate' });
      const key = String(req.headers['i-twilio-idempotency-token'] ?? '') || null;
      const stored = key ? byKey.get(key) : undefined;
      const answer = (m: SmsMessage) =>
        json(res, 201, { sid: m.sid, status: 'queued', to: m.to, body: m.body });
      if (stored) return answer(stored);
      if (state.mode === 'unavailable')
        return json(res, 503, { code: 20503, message: 'Service unavailable' });
      const form = new URLSearchParams(text);
      const m: SmsMessage = {
        sid: `SM${randomUUID().replace(/-/g, '')}`,
        to: form.get('To') ?? '',
        from: form.get('From') ?? form.get('MessagingServiceSid') ?? '',
        body: form.get('Body') ?? '',
        idempotencyKey: key,
      };
      state.messages.push(m);
      if (key) byKey.set(key, m);
      if (state.mode === 'reset-after') return req.socket.destroy();
      answer(m);
    });
  });
  const url = await listen(server);
  return Object.assign(state, { url, close: () => closeServer(server) });
}

export interface ServiceAccountFixture {
  /** The key file's JSON, as LC_FCM_SERVICE_ACCOUNT takes it. */
  json: string;
  clientEmail: string;
  publicKeyPem: string;
}

export function serviceAccount(tokenUri: string, projectId = 'demo-app'): ServiceAccountFixture {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const clientEmail = `lifecycle@${projectId}.iam.gserviceaccount.com`;
  return {
    clientEmail,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    json: JSON.stringify({
      type: 'service_account',
      project_id: projectId,
      private_key_id: randomUUID(),
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: clientEmail,
      token_uri: tokenUri,
    }),
  };
}

export interface FcmServer {
  url: string;
  tokenUri: string;
  account: ServiceAccountFixture;
  /** Seconds an issued access token lives. */
  tokenTtlS: number;
  /** Access tokens issued (one per accepted assertion). */
  issued: string[];
  /** Assertions refused (bad signature, issuer, audience, scope or age). */
  refused: string[];
  /** Messages FCM accepted: the device token, notification and the access token used. */
  messages: {
    token: string;
    title: string;
    body: string;
    data: Record<string, string>;
    bearer: string;
  }[];
  /** Send requests refused for their bearer. */
  unauthorized: number;
  /** Answer sends with 503 (nothing accepted). */
  unavailable: boolean;
  /** Whether an access token this server issued is still good. */
  isLive(token: string): boolean;
  /** Forgets every issued token (revoked): sends with them get 401. */
  revokeAll(): void;
  close(): Promise<void>;
}

/**
 * Google's OAuth token endpoint and the FCM HTTP v1 send endpoint, on one server. `tokensFrom`:
 * a second FCM endpoint of the same project, accepting the access tokens the other one issued.
 */
export async function startFcmServer(
  projectId = 'demo-app',
  opts: { tokensFrom?: FcmServer } = {},
): Promise<FcmServer> {
  const live = new Map<string, number>();
  // Filled in once the server listens (the token URI needs its port); handlers run after that.
  const state = {} as FcmServer;
  const server = createServer((req, res) => {
    void body(req).then(async (text) => {
      if (req.method === 'POST' && req.url === '/token') {
        const form = new URLSearchParams(text);
        const assertion = form.get('assertion') ?? '';
        try {
          if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer')
            throw new Error('unsupported_grant_type');
          const key = await importSPKI(state.account.publicKeyPem, 'RS256');
          const { payload } = await jwtVerify(assertion, key, {
            algorithms: ['RS256'],
            issuer: state.account.clientEmail,
            audience: state.tokenUri,
            maxTokenAge: '1h',
          });
          if (payload.scope !== 'https://www.googleapis.com/auth/firebase.messaging')
            throw new Error('invalid_scope');
        } catch (err) {
          state.refused.push((err as Error).message);
          return json(res, 400, {
            error: 'invalid_grant',
            error_description: (err as Error).message,
          });
        }
        const token = `ya29.${randomUUID()}`;
        live.set(token, Date.now() + state.tokenTtlS * 1000);
        state.issued.push(token);
        return json(res, 200, {
          access_token: token,
          expires_in: state.tokenTtlS,
          token_type: 'Bearer',
        });
      }
      if (req.method === 'POST' && req.url === `/v1/projects/${projectId}/messages:send`) {
        const bearer = (req.headers.authorization ?? '').replace(/^Bearer /, '');
        if (!(opts.tokensFrom ?? state).isLive(bearer)) {
          state.unauthorized++;
          return json(res, 401, {
            error: {
              code: 401,
              status: 'UNAUTHENTICATED',
              message: 'Request had invalid authentication credentials.',
            },
          });
        }
        if (state.unavailable)
          return json(res, 503, {
            error: { code: 503, status: 'UNAVAILABLE', message: 'try later' },
          });
        const m = (
          JSON.parse(text) as {
            message: {
              token: string;
              notification: { title: string; body: string };
              data: Record<string, string>;
            };
          }
        ).message;
        state.messages.push({ token: m.token, ...m.notification, data: m.data, bearer });
        return json(res, 200, { name: `projects/${projectId}/messages/${state.messages.length}` });
      }
      json(res, 404, { error: { code: 404, status: 'NOT_FOUND', message: 'no such route' } });
    });
  });
  const url = await listen(server);
  Object.assign(state, {
    url,
    tokenUri: `${url}/token`,
    account: serviceAccount(`${url}/token`, projectId),
    tokenTtlS: 3600,
    issued: [],
    refused: [],
    messages: [],
    unauthorized: 0,
    unavailable: false,
    isLive: (token) => (live.get(token) ?? 0) >= Date.now(),
    revokeAll: () => live.clear(),
    close: () => closeServer(server),
  } satisfies FcmServer);
  return state;
}

export interface ApnsKeyFixture {
  /** The .p8 key's PEM, as LC_APNS_KEY takes it. */
  pem: string;
  publicKeyPem: string;
  keyId: string;
  teamId: string;
}

export function apnsKey(): ApnsKeyFixture {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: 'ABC123DEFG',
    teamId: 'TEAM123456',
  };
}

export interface ApnsServer {
  url: string;
  key: ApnsKeyFixture;
  /** Notifications accepted: device token, apns-id, topic, payload, and the provider token's iat. */
  notifications: { device: string; apnsId: string; topic: string; payload: unknown; iat: number }[];
  /** Requests refused for their provider token, with APNs' reason. */
  refused: string[];
  /** Distinct provider tokens seen. */
  tokens: Set<string>;
  close(): Promise<void>;
}

/** APNs over HTTP/2 (cleartext, prior knowledge): `POST /3/device/<token>` with `authorization: bearer <ES256 JWT>`. */
export async function startApnsServer(): Promise<ApnsServer> {
  const key = apnsKey();
  const publicKey = await importSPKI(key.publicKeyPem, 'ES256');
  const server = createH2Server();
  const state: Omit<ApnsServer, 'url' | 'close'> = {
    key,
    notifications: [],
    refused: [],
    tokens: new Set(),
  };
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      void (async () => {
        const answer = (status: number, reason?: string, extra: Record<string, string> = {}) => {
          stream.respond({
            [constants.HTTP2_HEADER_STATUS]: status,
            'content-type': 'application/json',
            ...extra,
          });
          stream.end(reason ? JSON.stringify({ reason }) : undefined);
        };
        const path = String(headers[constants.HTTP2_HEADER_PATH] ?? '');
        if (headers[constants.HTTP2_HEADER_METHOD] !== 'POST' || !path.startsWith('/3/device/'))
          return answer(404, 'BadPath');
        const jwt = String(headers.authorization ?? '').replace(/^bearer /, '');
        let iat = 0;
        try {
          const header = decodeProtectedHeader(jwt);
          if (header.kid !== key.keyId) throw new Error('InvalidProviderToken');
          const { payload } = await jwtVerify(jwt, publicKey, {
            algorithms: ['ES256'],
            issuer: key.teamId,
          });
          iat = payload.iat ?? 0;
          if (Date.now() / 1000 - iat > 3600) throw new Error('ExpiredProviderToken');
        } catch (err) {
          const reason =
            (err as Error).message === 'ExpiredProviderToken'
              ? 'ExpiredProviderToken'
              : 'InvalidProviderToken';
          state.refused.push(reason);
          return answer(403, reason);
        }
        state.tokens.add(jwt);
        const device = decodeURIComponent(path.slice('/3/device/'.length));
        if (device.startsWith('gone')) return answer(410, 'Unregistered');
        const apnsId = String(headers['apns-id'] ?? randomUUID());
        state.notifications.push({
          device,
          apnsId,
          topic: String(headers['apns-topic'] ?? ''),
          payload: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown,
          iat,
        });
        answer(200, undefined, { 'apns-id': apnsId });
      })();
    });
  });
  const url = await listen(server);
  return Object.assign(state, {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  });
}
