// Channel assembly: the providers of every configured channel, several per channel in
// priority order (the pipeline fails over down the list): SMTP relays, in-app, webhook,
// SMS, push. It sits above providers/ and inapp/ because it needs both: the in-app
// provider writes to inapp/'s inbox and live channel, and inapp/ reads providers/' push
// device registry, so neither folder can build the whole list without importing the other.
import type { Logger } from 'pino';
import type { Config } from '../platform/config.ts';
import type { Channel } from '../platform/contracts.ts';
import { createRedis, type RedisDeps } from '../platform/redis.ts';
import { createInbox, type Inbox } from './inapp/inbox.ts';
import { createRedisLiveChannel, type LiveChannel } from './inapp/live.ts';
import { createInappProvider } from './inapp/provider.ts';
import type { Provider } from './provider.ts';
import { createDeviceRegistry } from './providers/devices.ts';
import { createSmtpProvider } from './providers/email.ts';
import { createRelayLookup } from './providers/relay-lookup.ts';
import { createApnsClient } from './providers/apns.ts';
import { createPushProvider } from './providers/push.ts';
import {
  createApnsTokenSource,
  createFcmTokenSource,
  inlineOrFile,
  parseServiceAccount,
} from './providers/push-auth.ts';
import { createSmsProvider } from './providers/sms.ts';
import type { Resolver } from './providers/ssrf.ts';
import { createWebhookProvider } from './providers/webhook.ts';

export type ProvidersConfig = Pick<Config, 'delivery' | 'auth' | 'redis'>;

export interface ProvidersDeps {
  logger: Logger;
  /** Redis for the in-app inbox/pub-sub and the push device registry; created from config when absent. */
  redis?: RedisDeps;
  /** SMTP pool size per relay. */
  smtp?: { maxConnections?: number; maxMessages?: number };
  /**
   * In-app inbox and live channel to use instead of Redis ones: the embedded demo passes the
   * in-memory twins it also gives its gateway.
   */
  inapp?: { inbox: Inbox; live: LiveChannel };
  /** Test seams: DNS for the webhook SSRF guard, fetch for SMS/push. */
  resolve?: Resolver;
  fetch?: typeof fetch;
}

/** The i-th entry of a per-provider list; one entry serves every provider. */
function perProvider(values: readonly string[], i: number, env: string, of: string): string {
  const v = values.length === 1 ? values[0] : values[i];
  if (!v)
    throw new Error(
      `${env} has no entry for provider ${i + 1} of ${of}: give one value per entry, in the same order (or one value for all)`,
    );
  return v;
}

function required(value: string, env: string, channel: string): string {
  if (!value) throw new Error(`${env} must be set when the ${channel} channel is configured`);
  return value;
}

/**
 * Builds every configured provider. Email: one per LC_SMTP_URLS entry (`smtp-1`, `smtp-2`,
 * ... in priority order). In-app and webhook: always. SMS: one per LC_SMS_API_URLS entry
 * (`sms-1`, ...). Push: one per LC_PUSH_API_URLS entry (`push-1`, ...), each sending iOS
 * tokens to APNs when LC_APNS_API_URL is set.
 */
export function createProviders(
  config: ProvidersConfig,
  deps: ProvidersDeps,
): Map<Channel, Provider[]> {
  const d = config.delivery;
  const log = deps.logger;
  const map = new Map<Channel, Provider[]>();
  const add = (p: Provider) => map.set(p.channel, [...(map.get(p.channel) ?? []), p]);

  // A Redis connection of our own is shared by the providers that need it and closed by the last one.
  let owned: RedisDeps | undefined;
  let users = 0;
  const redis = (): RedisDeps => {
    if (deps.redis) return deps.redis;
    owned ??= createRedis(config.redis, log);
    users++;
    return owned;
  };
  const release = async () => {
    if (!owned) return;
    if (--users === 0) await owned.redis.quit().catch(() => undefined);
  };

  if (d.smtpLookupUrls.length > d.smtpUrls.length) {
    throw new Error(
      `LC_SMTP_LOOKUP_URLS has ${d.smtpLookupUrls.length} entries but LC_SMTP_URLS only ${d.smtpUrls.length}: give one lookup URL per relay, in the same order (empty for none)`,
    );
  }
  d.smtpUrls.forEach((url, i) => {
    const lookupUrl = d.smtpLookupUrls[i];
    add(
      createSmtpProvider(
        {
          name: `smtp-${i + 1}`,
          url,
          from: d.emailFrom,
          sendTimeoutMs: d.smtpSendTimeoutMs,
          ...(deps.smtp?.maxConnections ? { maxConnections: deps.smtp.maxConnections } : {}),
          ...(deps.smtp?.maxMessages ? { maxMessages: deps.smtp.maxMessages } : {}),
          ...(lookupUrl
            ? {
                lookup: createRelayLookup({
                  url: lookupUrl,
                  foundPointer: d.smtpLookupFound,
                  ...(deps.fetch ? { fetch: deps.fetch } : {}),
                }),
              }
            : {}),
        },
        { logger: log },
      ),
    );
  });

  if (deps.inapp) {
    add(createInappProvider({ name: 'inapp' }, deps.inapp));
  } else {
    const inappRedis = redis();
    add(
      createInappProvider(
        { name: 'inapp' },
        {
          inbox: createInbox(inappRedis),
          // Publish only: this connection never subscribes.
          live: createRedisLiveChannel(inappRedis),
          ...(owned ? { onClose: release } : {}),
        },
      ),
    );
  }

  add(
    createWebhookProvider(
      { name: 'webhook', secret: config.auth.webhookSecret, allowPrivate: d.webhookAllowPrivate },
      { logger: log, ...(deps.resolve ? { resolve: deps.resolve } : {}) },
    ),
  );

  d.smsApiUrls.forEach((apiUrl, i) => {
    add(
      createSmsProvider(
        {
          name: `sms-${i + 1}`,
          apiUrl,
          accountSid: perProvider(d.smsAccountSids, i, 'LC_SMS_ACCOUNT_SIDS', 'LC_SMS_API_URLS'),
          authToken: perProvider(d.smsAuthTokens, i, 'LC_SMS_AUTH_TOKENS', 'LC_SMS_API_URLS'),
          from: perProvider(d.smsSenders, i, 'LC_SMS_SENDERS', 'LC_SMS_API_URLS'),
        },
        { logger: log, ...(deps.fetch ? { fetch: deps.fetch } : {}) },
      ),
    );
  });

  if (d.pushApiUrls.length > 0) {
    const pushRedis = redis();
    const devices = createDeviceRegistry(pushRedis);
    const account = parseServiceAccount(
      inlineOrFile(
        required(d.fcmServiceAccount, 'LC_FCM_SERVICE_ACCOUNT', 'push'),
        'LC_FCM_SERVICE_ACCOUNT',
      ),
    );
    // One token source and one APNs session for the channel's providers: a token minted for
    // the first serves the second, and APNs sees one connection.
    const fcmTokens = createFcmTokenSource(account, deps.fetch ? { fetch: deps.fetch } : {});
    const apns = d.apnsApiUrl
      ? {
          apnsTokens: createApnsTokenSource({
            key: inlineOrFile(required(d.apnsKey, 'LC_APNS_KEY', 'APNs push'), 'LC_APNS_KEY'),
            keyId: required(d.apnsKeyId, 'LC_APNS_KEY_ID', 'APNs push'),
            teamId: required(d.apnsTeamId, 'LC_APNS_TEAM_ID', 'APNs push'),
          }),
          apns: createApnsClient({ url: d.apnsApiUrl, timeoutMs: 10_000 }),
        }
      : undefined;
    const projectId = d.pushProjectId || account.project_id || '';
    d.pushApiUrls.forEach((fcmApiUrl, i) => {
      const last = i === d.pushApiUrls.length - 1;
      const push = createPushProvider(
        {
          name: `push-${i + 1}`,
          fcmApiUrl,
          fcmProjectId: required(projectId, 'LC_PUSH_PROJECT_ID', 'push'),
          ...(d.apnsApiUrl
            ? {
                apnsApiUrl: d.apnsApiUrl,
                apnsTopic: required(d.apnsTopic, 'LC_APNS_TOPIC', 'APNs push'),
              }
            : {}),
        },
        {
          logger: log,
          devices,
          fcmTokens,
          ...(apns ?? {}),
          ...(deps.fetch ? { fetch: deps.fetch } : {}),
        },
      );
      // The last push provider closes what the channel shares.
      add(
        last
          ? {
              name: push.name,
              channel: push.channel,
              ...(push.deadlineMs !== undefined ? { deadlineMs: push.deadlineMs } : {}),
              send: (m) => push.send(m),
              close: async () => {
                await apns?.apns.close();
                await release();
              },
            }
          : push,
      );
    });
  }

  log.info(
    { providers: Object.fromEntries([...map].map(([c, ps]) => [c, ps.map((p) => p.name)])) },
    'channel providers ready',
  );
  return map;
}
