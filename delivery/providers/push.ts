// Push notifications to every device a user registered: Android/web tokens through the
// FCM HTTP v1 API (`POST <base>/v1/projects/<project>/messages:send`, with an OAuth access
// token minted from the service account), iOS tokens through APNs (`POST /3/device/<token>`
// over HTTP/2, with an ES256 provider token) when it is configured. Tokens the service reports
// as dead (FCM UNREGISTERED / INVALID_ARGUMENT, APNs 410 Unregistered / BadDeviceToken) are
// removed from the user's device registry.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { DeviceRegistry, DevicePlatform } from './devices.ts';
import { createApnsClient, type ApnsClient } from './apns.ts';
import { networkFailure, readJson, transientStatus } from './http-result.ts';
import type { TokenSource } from './push-auth.ts';
import type { OutgoingMessage, Provider, ProviderResult } from '../provider.ts';

export interface PushProviderOptions {
  name?: string;
  /** FCM-shaped API base URL (https://fcm.googleapis.com). */
  fcmApiUrl: string;
  fcmProjectId: string;
  /** APNs base URL (https://api.push.apple.com; http:// speaks HTTP/2 without TLS); empty: iOS tokens go through FCM too. */
  apnsApiUrl?: string;
  apnsTopic?: string;
  timeoutMs?: number;
}

export interface PushProviderDeps {
  logger: Logger;
  /** OAuth access tokens of the FCM service account. */
  fcmTokens: TokenSource;
  /** APNs provider tokens; required with apnsApiUrl. */
  apnsTokens?: TokenSource;
  devices?: DeviceRegistry;
  fetch?: typeof fetch;
  /** The APNs HTTP/2 client (shared by the channel's providers); made from apnsApiUrl when absent. */
  apns?: ApnsClient;
}

interface TokenResult {
  token: string;
  result: ProviderResult;
}

/** APNs wants a UUID apns-id; derive it from the sendId so a retry carries the same id. */
export function apnsIdFor(sendId: string, token: string): string {
  const h = createHash('sha256').update(`${sendId}\u0000${token}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function fcmErrorCode(json: Record<string, unknown>): {
  status: string;
  errorCode: string;
  message: string;
} {
  const error = (json.error ?? {}) as { status?: unknown; message?: unknown; details?: unknown };
  const details = Array.isArray(error.details) ? (error.details as { errorCode?: unknown }[]) : [];
  const errorCode =
    details.map((d) => d.errorCode).find((c): c is string => typeof c === 'string') ?? '';
  return {
    status: typeof error.status === 'string' ? error.status : '',
    errorCode,
    message: typeof error.message === 'string' ? error.message : '',
  };
}

export function createPushProvider(opts: PushProviderOptions, deps: PushProviderDeps): Provider {
  const name = opts.name ?? 'push';
  const doFetch = deps.fetch ?? fetch;
  const log = deps.logger.child({ component: 'provider', provider: name });
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const fcmUrl = `${opts.fcmApiUrl.replace(/\/+$/, '')}/v1/projects/${encodeURIComponent(opts.fcmProjectId)}/messages:send`;
  const apnsBase = opts.apnsApiUrl ? opts.apnsApiUrl.replace(/\/+$/, '') : '';
  if (apnsBase && !deps.apnsTokens)
    throw new Error(
      'APNs needs its provider tokens (LC_APNS_KEY, LC_APNS_KEY_ID, LC_APNS_TEAM_ID)',
    );
  const apns: ApnsClient | undefined =
    deps.apns ?? (apnsBase ? createApnsClient({ url: apnsBase, timeoutMs }) : undefined);

  async function call(url: string, init: RequestInit): Promise<Response | ProviderResult> {
    try {
      return await doFetch(url, {
        ...init,
        redirect: 'error',
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      return networkFailure(err);
    }
  }

  async function sendFcm(token: string, message: OutgoingMessage): Promise<ProviderResult> {
    const { title = '', body = '', url } = message.content;
    const data: Record<string, string> = { sendId: message.sendId, ruleId: message.ruleId };
    if (url) data.url = url;
    let accessToken: string;
    try {
      accessToken = await deps.fcmTokens.token();
    } catch (err) {
      // No token, no request: the message cannot be at FCM.
      return { status: 'retriable', error: `FCM access token: ${(err as Error).message}` };
    }
    const res = await call(fcmUrl, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${accessToken}`,
        'Content-Type': 'application/json; charset=utf-8',
      },
      body: JSON.stringify({ message: { token, notification: { title, body }, data } }),
    });
    if (!(res instanceof Response)) return res;
    // A token revoked or expired early: the next call mints a new one.
    if (res.status === 401) deps.fcmTokens.invalidate();
    const json = await readJson(res).catch(() => ({}) as Record<string, unknown>);
    if (res.ok)
      return typeof json.name === 'string'
        ? { status: 'sent', providerMessageId: json.name }
        : { status: 'sent' };
    const { status, errorCode, message: detail } = fcmErrorCode(json);
    const what = `${errorCode || status || res.status}: ${detail}`;
    if (errorCode === 'UNREGISTERED' || (res.status === 404 && status === 'NOT_FOUND'))
      return {
        status: 'permanent',
        error: `token unregistered: ${what}`,
        suppress: 'invalid_token',
      };
    if (errorCode === 'SENDER_ID_MISMATCH')
      return {
        status: 'permanent',
        error: `token belongs to another sender: ${what}`,
        suppress: 'invalid_token',
      };
    if (
      errorCode === 'INVALID_ARGUMENT' ||
      (res.status === 400 && status === 'INVALID_ARGUMENT' && /token/i.test(detail))
    ) {
      return {
        status: 'permanent',
        error: `invalid token or payload: ${what}`,
        suppress: 'invalid_token',
      };
    }
    return (
      transientStatus(res.status, res.headers.get('retry-after'), what) ?? {
        status: 'permanent',
        error: `HTTP ${res.status}: ${what}`,
      }
    );
  }

  async function sendApns(token: string, message: OutgoingMessage): Promise<ProviderResult> {
    const { title = '', body = '', url } = message.content;
    const apnsId = apnsIdFor(message.sendId, token);
    let providerToken: string;
    try {
      providerToken = await deps.apnsTokens!.token();
    } catch (err) {
      return { status: 'retriable', error: `APNs provider token: ${(err as Error).message}` };
    }
    let res: { status: number; headers: Record<string, string>; body: string };
    try {
      res = await apns!.post(`/3/device/${encodeURIComponent(token)}`, {
        headers: {
          authorization: `bearer ${providerToken}`,
          'apns-topic': opts.apnsTopic ?? '',
          'apns-push-type': 'alert',
          'apns-priority': '10',
          'apns-id': apnsId,
          'content-type': 'application/json',
        },
        body: JSON.stringify({
          aps: { alert: { title, body }, sound: 'default' },
          sendId: message.sendId,
          ruleId: message.ruleId,
          ...(url ? { url } : {}),
        }),
      });
    } catch (err) {
      return networkFailure(err);
    }
    if (res.status === 200)
      return { status: 'sent', providerMessageId: res.headers['apns-id'] ?? apnsId };
    let reason = '';
    try {
      const json = JSON.parse(res.body) as { reason?: unknown };
      if (typeof json.reason === 'string') reason = json.reason;
    } catch {
      reason = res.body.slice(0, 200);
    }
    if (
      res.status === 410 ||
      reason === 'Unregistered' ||
      reason === 'BadDeviceToken' ||
      reason === 'DeviceTokenNotForTopic'
    ) {
      return { status: 'permanent', error: `token ${reason}`, suppress: 'invalid_token' };
    }
    if (reason === 'ExpiredProviderToken') deps.apnsTokens!.invalidate();
    return (
      transientStatus(res.status, res.headers['retry-after'] ?? null, reason) ?? {
        status: 'permanent',
        error: `HTTP ${res.status}: ${reason}`,
      }
    );
  }

  return {
    name,
    channel: 'push',
    deadlineMs: timeoutMs + 5_000,
    async close() {
      if (!deps.apns) await apns?.close();
    },
    async send(message: OutgoingMessage): Promise<ProviderResult> {
      const userId = message.recipient.userId;
      const targets = new Map<string, DevicePlatform>();
      if (deps.devices)
        for (const d of await deps.devices.list(userId)) targets.set(d.token, d.platform);
      for (const t of message.recipient.deviceTokens ?? [])
        if (!targets.has(t)) targets.set(t, 'fcm');
      if (targets.size === 0)
        return { status: 'permanent', error: 'user has no registered push devices' };
      if (!message.content.title && !message.content.body)
        return { status: 'permanent', error: 'rendered push has no title or body' };

      const results: TokenResult[] = await Promise.all(
        [...targets].map(async ([token, platform]) => ({
          token,
          result:
            platform === 'apns' && apns
              ? await sendApns(token, message)
              : await sendFcm(token, message),
        })),
      );
      const dead = results
        .filter((r) => r.result.status === 'permanent' && r.result.suppress === 'invalid_token')
        .map((r) => r.token);
      if (dead.length > 0 && deps.devices) {
        await Promise.all(dead.map((t) => deps.devices!.unregister(userId, t)));
        log.info(
          { userId, removed: dead.length },
          'removed push tokens the service reported as dead',
        );
      }
      const sent = results.find((r) => r.result.status === 'sent');
      if (sent) return sent.result;
      const retriable = results.filter((r) => r.result.status === 'retriable');
      if (retriable.length > 0) {
        const after = Math.max(
          0,
          ...retriable.map((r) =>
            r.result.status === 'retriable' ? (r.result.retryAfterMs ?? 0) : 0,
          ),
        );
        return {
          status: 'retriable',
          error: retriable.map((r) => r.result.status === 'retriable' && r.result.error).join('; '),
          ...(after > 0 ? { retryAfterMs: after } : {}),
          // One device's call that may have reached the service makes the whole send unsettled.
          ...(retriable.some((r) => r.result.status === 'retriable' && r.result.ambiguous)
            ? { ambiguous: true }
            : {}),
        };
      }
      if (dead.length === results.length) {
        // Registry tokens are already removed, so a device registered later is reached. Only
        // tokens from the user's traits (which we cannot edit) are worth suppressing; the
        // pipeline keys that suppression on the first trait token.
        const fromTraits = (message.recipient.deviceTokens ?? []).length > 0;
        return {
          status: 'permanent',
          error: `every device token is dead (${dead.length})`,
          ...(fromTraits ? { suppress: 'invalid_token' as const } : {}),
        };
      }
      const first = results[0]!.result;
      return first.status === 'permanent'
        ? { status: 'permanent', error: first.error }
        : { status: 'permanent', error: 'push refused' };
    },
  };
}
