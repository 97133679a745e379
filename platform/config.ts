// The one configuration schema. Every leaf names the environment variable it is read
// from (`env`), so the loader, the README table and the docker-compose check all derive
// from this file. Loaded once per process, validated, frozen.
import { Type, type Static, type TSchema, Kind } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { isIP } from 'node:net';

interface EnvOptions {
  env: string;
  description: string;
  secret?: boolean;
}

const str = (o: EnvOptions & { default?: string; minLength?: number; pattern?: string }) =>
  Type.String(o);
const int = (o: EnvOptions & { default?: number; minimum?: number; maximum?: number }) =>
  Type.Integer(o);
const bool = (o: EnvOptions & { default?: boolean }) => Type.Boolean(o);
const list = (o: EnvOptions & { default?: string[] }) => Type.Array(Type.String(), o);
const oneOf = <T extends string>(values: readonly T[], o: EnvOptions & { default?: T }) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    o,
  );
/** A duration as the rules write them: a whole number and s, m, h, d or w. */
const DURATION = '^[0-9]+(s|m|h|d|w)$';
const url = (o: EnvOptions & { default?: string }) =>
  Type.String({ ...o, pattern: '^[a-z][a-z0-9+.-]*://' });

export const ConfigSchema = Type.Object({
  env: oneOf(['development', 'test', 'production'] as const, {
    env: 'NODE_ENV',
    description: 'Deployment environment; production refuses the built-in development secrets.',
    default: 'development',
  }),
  log: Type.Object({
    level: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, {
      env: 'LC_LOG_LEVEL',
      description: 'pino log level.',
      default: 'info',
    }),
  }),
  kafka: Type.Object({
    brokers: list({
      env: 'LC_KAFKA_BROKERS',
      description: 'Comma-separated Kafka bootstrap servers.',
      default: ['127.0.0.1:19092'],
    }),
    clientId: str({
      env: 'LC_KAFKA_CLIENT_ID',
      description: 'Kafka client id.',
      default: 'lifecycle',
    }),
    topicPrefix: str({
      env: 'LC_TOPIC_PREFIX',
      description: 'Prefix of the internal topics (`<prefix>.events`, `.sends`, ...).',
      default: 'lifecycle',
      minLength: 1,
    }),
    partitions: int({
      env: 'LC_KAFKA_PARTITIONS',
      description: 'Partitions created for internal topics (the unit of engine parallelism).',
      default: 12,
      minimum: 1,
    }),
    replicationFactor: int({
      env: 'LC_KAFKA_REPLICATION_FACTOR',
      description: 'Replication factor of internal topics.',
      default: 1,
      minimum: 1,
    }),
  }),
  redis: Type.Object({
    url: url({
      env: 'LC_REDIS_URL',
      description: 'Redis URL of the state store (redis://[:password@]host:port/db).',
      default: 'redis://127.0.0.1:16379',
      // It may carry the password.
      secret: true,
    }),
    keyPrefix: str({
      env: 'LC_REDIS_KEY_PREFIX',
      description: 'Prefix of every key the product writes.',
      default: 'lc:',
    }),
    durability: oneOf(['auto', 'fsync-always', 'waitaof', 'none'] as const, {
      env: 'LC_REDIS_DURABILITY',
      description:
        'How Redis writes (user state, rule history, timers, claims, unsubscribes) are kept safe from a Redis crash before the Kafka offset that produced them is committed or the unsubscribe is answered. `auto`: `appendfsync always` if the server runs it, else WAITAOF (Redis 7.2+ with appendonly yes); without either, or with a maxmemory-policy other than `noeviction`, processes refuse to start (NODE_ENV=development: they warn). `fsync-always` / `waitaof`: require that one. `none`: accept the risk (a crash may lose the last second of writes; warnings only).',
      default: 'auto',
    }),
  }),
  clickhouse: Type.Object({
    backend: oneOf(['server', 'chdb'] as const, {
      env: 'LC_ANALYTICS_BACKEND',
      description: '`server` talks to ClickHouse over HTTP; `chdb` runs the engine in-process.',
      default: 'server',
    }),
    url: url({
      env: 'LC_CLICKHOUSE_URL',
      description: 'ClickHouse HTTP endpoint.',
      default: 'http://127.0.0.1:18123',
    }),
    database: str({
      env: 'LC_CLICKHOUSE_DATABASE',
      description: 'ClickHouse database holding the analytics tables.',
      default: 'lifecycle',
    }),
    user: str({ env: 'LC_CLICKHOUSE_USER', description: 'ClickHouse user.', default: 'default' }),
    password: str({
      env: 'LC_CLICKHOUSE_PASSWORD',
      description: 'ClickHouse password.',
      default: '',
      secret: true,
    }),
    chdbPath: str({
      env: 'LC_CHDB_PATH',
      description: 'Data folder of the embedded chDB engine.',
      default: '.data/chdb',
    }),
  }),
  postgres: Type.Object({
    url: url({
      env: 'LC_POSTGRES_URL',
      description:
        'PostgreSQL URL of the product database that Debezium reads (used by tests and examples).',
      default: 'postgresql://postgres@127.0.0.1:5432/postgres',
      // It may carry the password.
      secret: true,
    }),
  }),
  cdc: Type.Object({
    topics: list({
      env: 'LC_CDC_TOPICS',
      description: 'Debezium topics (or regex between slashes) the CDC consumer reads.',
      default: [],
    }),
    mappingFile: str({
      env: 'LC_CDC_MAPPING_FILE',
      description: 'JSON mapping from table changes to events.',
      default: 'ingestion/cdc-mapping.example.json',
    }),
    schemaRegistryUrl: str({
      env: 'LC_SCHEMA_REGISTRY_URL',
      description: 'Schema registry for Avro-encoded Debezium topics (empty: JSON only).',
      default: '',
    }),
  }),
  http: Type.Object({
    host: str({
      env: 'LC_HTTP_HOST',
      description: 'Interface the HTTP servers bind.',
      default: '127.0.0.1',
    }),
    ingestPort: int({
      env: 'LC_INGEST_PORT',
      description: 'Port of the Segment-compatible ingest API.',
      default: 8088,
      minimum: 0,
      maximum: 65535,
    }),
    apiPort: int({
      env: 'LC_API_PORT',
      description: 'Port of the admin API, tracking endpoints, dashboards and in-app gateway.',
      default: 8089,
      minimum: 0,
      maximum: 65535,
    }),
    publicBaseUrl: url({
      env: 'LC_PUBLIC_BASE_URL',
      description: 'Public URL of the API, used in tracking links and unsubscribe URLs.',
      default: 'http://127.0.0.1:8089',
    }),
    trustProxy: str({
      env: 'LC_TRUST_PROXY',
      description:
        'Which peers may tell the HTTP servers who the client is: the client address (`X-Forwarded-For`) and the scheme and host it asked for (`X-Forwarded-Proto`, `X-Forwarded-Host`). `false`: nobody, the address is the connecting peer (direct exposure). `true`: any peer (only behind a proxy that overwrites the header, since clients can set it). A number: that many proxy hops in front. Or a comma-separated list of proxy addresses and CIDRs, and the names `loopback`, `linklocal`, `uniquelocal`.',
      default: 'false',
    }),
    linkRateLimit: int({
      env: 'LC_LINK_RATE_LIMIT',
      description:
        'Uses of one signed link (click, open pixel, unsubscribe, preference page) per minute before it is answered 429 (the pixel: not counted); counted per API process.',
      default: 30,
      minimum: 1,
    }),
  }),
  auth: Type.Object({
    adminToken: str({
      env: 'LC_ADMIN_TOKEN',
      description:
        "The operators' break-glass credential: accepted as `Authorization: Bearer <token>` with the role admin on every staff route, beside API keys and JWTs. Keep it in a vault; give people and services API keys.",
      default: 'dev-admin-token',
      secret: true,
    }),
    bootstrapAdminKey: str({
      env: 'LC_BOOTSTRAP_ADMIN_KEY',
      description:
        'An admin API key the API server stores (hashed) at start when no key with that value exists yet, named `bootstrap`: the first admin key of a deployment that cannot run `lifecycle keys create` (at least 32 characters, e.g. `openssl rand -hex 24`). Revoking it holds across restarts. Empty: none.',
      default: '',
      pattern: '^(|.{32,})$',
      secret: true,
    }),
    jwtJwksUrl: str({
      env: 'LC_JWT_JWKS_URL',
      description:
        'JWKS URL of the identity provider whose JWT bearer tokens staff may present instead of API keys (RS256 or ES256, LC_JWT_ISSUER and LC_JWT_AUDIENCE required, role from LC_JWT_ROLE_CLAIM). Empty: JWTs are not accepted.',
      default: '',
      pattern: '^(|https?://.+)$',
    }),
    jwtIssuer: str({
      env: 'LC_JWT_ISSUER',
      description: 'The `iss` every accepted JWT must carry.',
      default: '',
    }),
    jwtAudience: str({
      env: 'LC_JWT_AUDIENCE',
      description: 'The `aud` every accepted JWT must carry.',
      default: '',
    }),
    jwtRoleClaim: str({
      env: 'LC_JWT_ROLE_CLAIM',
      description:
        'The JWT claim holding the staff role (admin, marketer, analyst, support, service); a string, or an array of which the first known role counts.',
      default: 'role',
      minLength: 1,
    }),
    writeKeys: list({
      env: 'LC_WRITE_KEYS',
      description:
        'Ingest write keys as `source:key[:client|server]`, comma-separated; each key names the source of its events. Without a kind a key is `client` (browser and mobile SDKs, readable by anyone): its messages cannot set protected traits (LC_PROTECTED_TRAITS). Give `server` only to keys your backends hold.',
      default: ['demo:dev-write-key:server', 'web:dev-browser-key:client'],
      secret: true,
    }),
    protectedTraits: list({
      env: 'LC_PROTECTED_TRAITS',
      description:
        'Traits, comma-separated, that client write keys may not set, in addition to the built-in email, phone, deviceTokens, webhookUrl and plan (names match case-insensitively); dropped from client identify calls, counted in lifecycle_ingest_dropped_traits_total.',
      default: [],
    }),
    identitySecrets: list({
      env: 'LC_IDENTITY_SECRETS',
      description:
        'Identity verification of client write keys, as `source:secret` pairs (secret: 32+ characters): a client message of such a source with a userId must carry `context.userHash`, the hex HMAC-SHA256 of the userId with the secret, computed by your backend (401 without, 403 when wrong); anonymous messages are accepted but may not identify or alias.',
      default: [],
      secret: true,
    }),
    signingSecret: str({
      env: 'LC_SIGNING_SECRET',
      description: 'HMAC secret for tracking links, unsubscribe links and preference pages.',
      default: 'dev-signing-secret-change-me',
      secret: true,
      minLength: 16,
    }),
    webhookSecret: str({
      env: 'LC_WEBHOOK_SECRET',
      description: 'HMAC secret that signs outgoing webhook bodies.',
      default: 'dev-webhook-secret-change-me',
      secret: true,
    }),
    // Handed to the mail provider, so it must not be LC_SIGNING_SECRET (which would let the
    // provider forge clicks, unsubscribes and preference links).
    emailEventsSecret: Type.String({
      env: 'LC_EMAIL_EVENTS_SECRET',
      description:
        'HMAC secret of the mail provider\'s bounce/complaint webhook (POST /v1/webhooks/email, header `X-LC-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`): at least 16 characters, different from LC_SIGNING_SECRET. Empty: the webhook answers 503.',
      default: '',
      secret: true,
      pattern: '^(.{16,})?$',
    }),
    emailEventsToleranceMs: int({
      env: 'LC_EMAIL_EVENTS_TOLERANCE_MS',
      description:
        "How far the bounce webhook signature's timestamp may be from now; older (replayed) or later requests are refused.",
      default: 300_000,
      minimum: 1000,
      maximum: 3_600_000,
    }),
    linkTtlDays: int({
      env: 'LC_LINK_TTL_DAYS',
      description:
        'Days a click or open-pixel link of a message works; an expired click link shows its destination as text instead of redirecting.',
      default: 90,
      minimum: 1,
    }),
    // Held by the product's backend, which mints the tokens: with LC_SIGNING_SECRET it could
    // also forge tracking, unsubscribe and preference links (checked in loadConfig).
    inappSecret: str({
      env: 'LC_INAPP_SECRET',
      description:
        'HMAC secret of in-app client tokens, shared with the product backend that mints them: at least 16 characters, different from LC_SIGNING_SECRET and LC_EMAIL_EVENTS_SECRET.',
      default: 'dev-inapp-secret-change-me',
      secret: true,
      minLength: 16,
    }),
    // At least 30 days: CAN-SPAM wants an unsubscribe link to work that long after sending.
    unsubscribeTtlDays: int({
      env: 'LC_UNSUBSCRIBE_TTL_DAYS',
      description: 'Days an unsubscribe or preference-page link works (at least 30).',
      default: 365,
      minimum: 30,
    }),
  }),
  ingest: Type.Object({
    maxBatchBytes: int({
      env: 'LC_INGEST_MAX_BATCH_BYTES',
      description: 'Largest accepted request body (Segment: 500 KB).',
      default: 512_000,
      minimum: 1024,
    }),
    maxEventBytes: int({
      env: 'LC_INGEST_MAX_EVENT_BYTES',
      description: 'Largest accepted single event (Segment: 32 KB).',
      default: 32_768,
      minimum: 256,
    }),
    rateLimitPerSecond: int({
      env: 'LC_INGEST_RATE_LIMIT',
      description: 'Events per second accepted per write key before 429.',
      default: 20_000,
      minimum: 1,
    }),
    workers: int({
      env: 'LC_INGEST_WORKERS',
      description:
        'HTTP ingest processes sharing the ingest port (node cluster), each with its own idempotent Kafka producer: one per core the host can give. The per-key rate limit is split between them.',
      default: 1,
      minimum: 1,
      maximum: 64,
    }),
  }),
  engine: Type.Object({
    rulesDir: str({
      env: 'LC_RULES_DIR',
      description: 'Folder of rule files.',
      default: 'rules/examples',
    }),
    groupId: str({
      env: 'LC_ENGINE_GROUP',
      description: 'Engine consumer group.',
      default: 'lifecycle-engine',
    }),
    timerPollMs: int({
      env: 'LC_TIMER_POLL_MS',
      description: 'How often each partition owner looks for due timers.',
      default: 250,
      minimum: 10,
    }),
    schedulerGroup: str({
      env: 'LC_SCHEDULER_GROUP',
      description: "Consumer group of the scheduler's user directory (reads the events topic).",
      default: 'lifecycle-scheduler',
    }),
    schedulerCatchUpMs: int({
      env: 'LC_SCHEDULER_CATCHUP_MS',
      description:
        'Missed schedule occurrences younger than this are still fanned out after downtime; older ones are skipped (logged).',
      default: 21_600_000,
      minimum: 0,
    }),
    schedulerPageSize: int({
      env: 'LC_SCHEDULER_PAGE_SIZE',
      description: 'Users per fan-out page (one publish and one progress write per page).',
      default: 1000,
      minimum: 1,
    }),
    schedulerLeaseMs: int({
      env: 'LC_SCHEDULER_LEASE_MS',
      description:
        "How long a scheduler instance owns a rule's fan-out without renewing it (a killed instance's fan-out resumes after this).",
      default: 30_000,
      minimum: 500,
    }),
    schedulerTickMs: int({
      env: 'LC_SCHEDULER_TICK_MS',
      description: 'How often the scheduler looks for due occurrences.',
      default: 1000,
      minimum: 10,
    }),
    campaignRate: int({
      env: 'LC_CAMPAIGN_RATE',
      description:
        'Audience members per second a campaign run is fanned out to when the campaign sets no rate of its own (`throttle.perSecond`); 0: as fast as the scheduler publishes.',
      default: 0,
      minimum: 0,
    }),
    campaignListMaxRows: int({
      env: 'LC_CAMPAIGN_LIST_MAX_ROWS',
      description:
        'Most user ids an uploaded campaign audience (CSV, PUT /v1/campaigns/:id/audience) may hold; a larger list is refused with 413.',
      default: 1_000_000,
      minimum: 1,
    }),
    campaignListMaxBytes: int({
      env: 'LC_CAMPAIGN_LIST_MAX_BYTES',
      description: 'Largest body of a campaign audience upload (CSV), in bytes.',
      default: 33_554_432,
      minimum: 1024,
    }),
  }),
  delivery: Type.Object({
    groupId: str({
      env: 'LC_DELIVERY_GROUP',
      description: 'Delivery consumer group.',
      default: 'lifecycle-delivery',
    }),
    templatesDir: str({
      env: 'LC_TEMPLATES_DIR',
      description:
        'Folder of message templates: layouts and partials, and the templates that seed the managed templates store (each folder whose files changed becomes a new version at start).',
      default: 'templates',
    }),
    messageTypesFile: str({
      env: 'LC_MESSAGE_TYPES_FILE',
      description:
        'The declaration of message types (product news, tips, billing...): what rules, campaigns and the send API may name, what the preference page offers, what delivery enforces. Checked at start by every process that reads it.',
      default: 'rules/message-types.json',
    }),
    templatesPublishFiles: bool({
      env: 'LC_TEMPLATES_PUBLISH_FILES',
      description:
        'Publish a version made from changed files in LC_TEMPLATES_DIR for every channel at once (teams that keep templates in git). false: it is stored as a draft, published through the API; a template with nothing published yet is published either way.',
      default: true,
    }),
    testSendDomains: list({
      env: 'LC_TEST_SEND_DOMAINS',
      description:
        'Email domains that may receive test sends of templates when NODE_ENV=production (comma-separated, e.g. `example.com,staff.example.com`; subdomains included). Empty: no test sends in production. Outside production any address may.',
      default: [],
    }),
    smtpUrls: list({
      env: 'LC_SMTP_URLS',
      description: 'SMTP relays in priority order (failover goes down the list).',
      default: ['smtp://127.0.0.1:12525'],
      secret: true,
    }),
    smtpLookupUrls: list({
      env: 'LC_SMTP_LOOKUP_URLS',
      description:
        "Per relay, in LC_SMTP_URLS order (empty entry: none): the relay's message search URL with `{messageId}`. A send taken over from a worker that died mid-call is looked up there first and not sent again if the relay has it.",
      default: [],
      secret: true,
    }),
    smtpLookupFound: str({
      env: 'LC_SMTP_LOOKUP_FOUND',
      description:
        'JSON pointer into the lookup answer to the list or count that is non-empty when the message was found, e.g. `/messages` (empty: the whole answer).',
      default: '',
    }),
    smtpSendTimeoutMs: int({
      env: 'LC_SMTP_SEND_TIMEOUT_MS',
      description:
        'Longest one SMTP send may take, connection wait included. A send past it counts as failed without an answer (the relay may have the message): its retry asks the relay lookup first, and the connection pool is replaced. Keep it below LC_DELIVERY_LEASE_MS, so a call ends before another worker may take its send over.',
      default: 25_000,
      minimum: 100,
    }),
    emailFrom: str({
      env: 'LC_EMAIL_FROM',
      description: 'From address of emails.',
      default: 'Lifecycle <hello@example.com>',
    }),
    defaultTimezone: str({
      env: 'LC_DEFAULT_TIMEZONE',
      description: 'Timezone for users without a `timezone` trait.',
      default: 'UTC',
    }),
    quietHours: str({
      env: 'LC_QUIET_HOURS',
      description: 'Quiet hours in the user timezone, `HH:MM-HH:MM` (empty: none).',
      default: '21:00-08:00',
    }),
    capPerDay: int({
      env: 'LC_CAP_PER_DAY',
      description:
        'Frequency cap: non-transactional sends per user per channel per rolling day, for email, SMS and push unless LC_CAPS sets their own (0: no daily cap).',
      default: 3,
      minimum: 0,
    }),
    capPerWeek: int({
      env: 'LC_CAP_PER_WEEK',
      description:
        'Frequency cap: non-transactional sends per user per channel per rolling week, for email, SMS and push unless LC_CAPS sets their own (0: no weekly cap).',
      default: 10,
      minimum: 0,
    }),
    channelCaps: str({
      env: 'LC_CAPS',
      description:
        'Frequency caps of single channels, `<channel>:<per day>/<per week>` or `<channel>:none`, comma-separated, e.g. `email:3/10,sms:1/3,push:5/20`. Channels not listed: email, SMS and push get LC_CAP_PER_DAY/LC_CAP_PER_WEEK; in-app and webhook are not capped.',
      default: '',
      // The form is checked here, so every process refuses a malformed value at start; which
      // channels exist and day <= week are checked by delivery (parseChannelCaps).
      pattern: '^\\s*([a-zA-Z]+\\s*:\\s*(none|\\d+\\s*/\\s*\\d+)\\s*(,\\s*|$))*$',
    }),
    maxAttempts: int({
      env: 'LC_DELIVERY_MAX_ATTEMPTS',
      description: 'Provider attempts before the DLQ.',
      default: 6,
      minimum: 1,
    }),
    webhookAllowPrivate: bool({
      env: 'LC_WEBHOOK_ALLOW_PRIVATE',
      description: 'Allow webhooks to private/loopback addresses (tests, on-prem).',
      default: false,
    }),
    smsApiUrls: list({
      env: 'LC_SMS_API_URLS',
      description:
        'Twilio-shaped SMS APIs in priority order (failover goes down the list, as for LC_SMTP_URLS); empty: the SMS channel is off.',
      default: [],
    }),
    smsAccountSids: list({
      env: 'LC_SMS_ACCOUNT_SIDS',
      description:
        'Account SID per SMS API, in LC_SMS_API_URLS order (Basic auth user); one value serves every API.',
      default: [],
    }),
    smsAuthTokens: list({
      env: 'LC_SMS_AUTH_TOKENS',
      description:
        'Auth token per SMS API, in LC_SMS_API_URLS order (Basic auth password); one value serves every API.',
      default: [],
      secret: true,
    }),
    smsSenders: list({
      env: 'LC_SMS_SENDERS',
      description:
        'Sender number (E.164) or messaging service SID (`MG...`) per SMS API, in LC_SMS_API_URLS order; one value serves every API.',
      default: [],
    }),
    pushApiUrls: list({
      env: 'LC_PUSH_API_URLS',
      description:
        'FCM HTTP v1-shaped push APIs in priority order (failover goes down the list), e.g. `https://fcm.googleapis.com`; empty: the push channel is off.',
      default: [],
    }),
    pushProjectId: str({
      env: 'LC_PUSH_PROJECT_ID',
      description: 'Project id in the FCM HTTP v1 send URL.',
      default: '',
    }),
    fcmServiceAccount: str({
      env: 'LC_FCM_SERVICE_ACCOUNT',
      description:
        "The Firebase project's service-account key: its JSON, or the path of the JSON file. Access tokens are minted from it (an RS256-signed assertion to its `token_uri`) and renewed before they expire.",
      default: '',
      secret: true,
    }),
    apnsApiUrl: str({
      env: 'LC_APNS_API_URL',
      description:
        'APNs API base URL for iOS device tokens, spoken over HTTP/2, e.g. `https://api.push.apple.com` (empty: iOS tokens go to FCM).',
      default: '',
    }),
    apnsTopic: str({
      env: 'LC_APNS_TOPIC',
      description: 'apns-topic (the iOS app bundle id).',
      default: '',
    }),
    apnsKey: str({
      env: 'LC_APNS_KEY',
      description:
        'The APNs auth key (`AuthKey_<key id>.p8`, an EC P-256 private key): its PEM, or the path of the file. Provider tokens (ES256) are signed with it and renewed every 40 minutes.',
      default: '',
      secret: true,
    }),
    apnsKeyId: str({
      env: 'LC_APNS_KEY_ID',
      description: 'Key id of LC_APNS_KEY (the `kid` of provider tokens).',
      default: '',
    }),
    apnsTeamId: str({
      env: 'LC_APNS_TEAM_ID',
      description: 'Apple developer team id (the `iss` of provider tokens).',
      default: '',
    }),
    shortLinkTtlS: int({
      env: 'LC_SHORT_LINK_TTL',
      description:
        'Seconds a short link of an SMS or push message (`<LC_PUBLIC_BASE_URL>/s/<code>`) works; after it the link answers 404.',
      default: 30 * 24 * 3600,
      minimum: 1,
    }),
    leaseMs: int({
      env: 'LC_DELIVERY_LEASE_MS',
      description:
        "How long a claimed sendId stays with a worker before another may take it over (a killed worker's sends resume after this).",
      default: 30_000,
      minimum: 500,
    }),
    retryBaseMs: int({
      env: 'LC_RETRY_BASE_MS',
      description:
        'First retry delay of a retriable provider failure; doubles per attempt, with jitter.',
      default: 2_000,
      minimum: 10,
    }),
    retryMaxMs: int({
      env: 'LC_RETRY_MAX_MS',
      description: 'Longest retry delay.',
      default: 600_000,
      minimum: 10,
    }),
    breakerThreshold: int({
      env: 'LC_BREAKER_THRESHOLD',
      description: "Consecutive failures that open a provider's circuit breaker.",
      default: 5,
      minimum: 1,
    }),
    breakerCooldownMs: int({
      env: 'LC_BREAKER_COOLDOWN_MS',
      description: 'How long an open breaker waits before a trial call.',
      default: 30_000,
      minimum: 10,
    }),
    delayPollMs: int({
      env: 'LC_DELAY_POLL_MS',
      description: 'How often the durable delay queue (quiet hours, retries) is polled.',
      default: 500,
      minimum: 10,
    }),
    sendMaxDataBytes: int({
      env: 'LC_SEND_MAX_DATA_BYTES',
      description:
        'Largest `data` of one message of the send API (POST /v1/send, /v1/send/batch), as JSON bytes; a larger one is refused with 413. Large content belongs behind a URL in the data.',
      default: 262_144,
      minimum: 1024,
      // A send record carries the data plus the user's traits, and the sends topics take 8 MB records.
      maximum: 4 * 1024 * 1024,
    }),
    doubleOptIn: bool({
      env: 'LC_DOUBLE_OPT_IN',
      description:
        'Double opt-in: a marketing email opt-in (the preference API, the preference page, an `identify` with the trait `marketing_opt_in`) only starts a request and sends the transactional email `confirm_subscription`; consent is granted when the person confirms through its link (source `double_opt_in`, with time, IP and user agent). false: opt-ins are recorded as they arrive.',
      default: true,
    }),
    optInLinkTtl: str({
      env: 'LC_OPT_IN_LINK_TTL',
      description:
        'How long the link of a confirmation email works, as a duration (`90s`, `15m`, `12h`, `7d`, `2w`); the request expiring (LC_OPT_IN_EXPIRES_AFTER) ends it too.',
      default: '7d',
      pattern: DURATION,
    }),
    optInReminderAfter: str({
      env: 'LC_OPT_IN_REMINDER_AFTER',
      description:
        'When an unconfirmed opt-in request gets its one reminder email, after the request (a duration; `0s`: no reminder). A reminder due at or after the expiry is not sent.',
      default: '2d',
      pattern: DURATION,
    }),
    optInExpiresAfter: str({
      env: 'LC_OPT_IN_EXPIRES_AFTER',
      description:
        'When an unconfirmed opt-in request expires, after the request (a duration): its link stops working and a new opt-in starts a new request.',
      default: '7d',
      pattern: DURATION,
    }),
    concurrency: int({
      env: 'LC_DELIVERY_CONCURRENCY',
      description: 'Users processed in parallel per batch by one delivery worker.',
      default: 16,
      minimum: 1,
    }),
    // At most 3 MiB: the message log's record carries the HTML, its text part and the send's
    // data, and has to stay under the 8 MiB record limit of the messages topic.
    maxMessageBytes: int({
      env: 'LC_MAX_MESSAGE_BYTES',
      description:
        'Largest rendered message in bytes (an email: its HTML, inline `data:` images included). A larger one fails before any provider call (`message.too_large`, to the DLQ). The default takes a 2 MB email with room to spare; at most 3 MiB.',
      default: 2_621_440,
      minimum: 1024,
      maximum: 3_145_728,
    }),
  }),
  analytics: Type.Object({
    groupId: str({
      env: 'LC_SINK_GROUP',
      description: 'Analytics sink consumer group.',
      default: 'lifecycle-sink',
    }),
    payloadTtlDays: int({
      env: 'LC_PAYLOAD_TTL_DAYS',
      description: 'Days message payloads are kept.',
      default: 30,
      minimum: 1,
    }),
    messageBodyTtlDays: int({
      env: 'LC_MESSAGE_BODY_TTL_DAYS',
      description:
        "Days the message log keeps what a message said (subject, HTML, text, content and the send's data); after that only its metadata (who, when, channel, template, status) stays, and it can no longer be resent.",
      default: 30,
      minimum: 1,
    }),
    dashboardsDir: str({
      env: 'LC_DASHBOARDS_DIR',
      description: 'Folder of dashboard specs.',
      default: 'dashboards',
    }),
  }),
  metrics: Type.Object({
    port: int({
      env: 'LC_METRICS_PORT',
      description:
        'Port of the endpoint of worker processes: /metrics (Prometheus), /health and /openapi.json (0: off).',
      default: 0,
      minimum: 0,
      maximum: 65535,
    }),
    token: str({
      env: 'LC_METRICS_TOKEN',
      description:
        'Bearer token a scraper sends for /metrics of the servers that face the internet (ingest, API); without it they refuse /metrics, and the metrics are read on LC_METRICS_PORT.',
      default: '',
      secret: true,
    }),
  }),
});

export type Config = Static<typeof ConfigSchema>;

export interface EnvVariable {
  env: string;
  path: string;
  description: string;
  secret: boolean;
  default: unknown;
  schema: TSchema;
}

/** Every environment variable the product reads, in schema order. */
export function envVariables(schema: TSchema = ConfigSchema, path = ''): EnvVariable[] {
  if (schema[Kind] === 'Object' && !('env' in schema)) {
    return Object.entries(schema.properties as Record<string, TSchema>).flatMap(([k, s]) =>
      envVariables(s, path ? `${path}.${k}` : k),
    );
  }
  const opts = schema as TSchema & Partial<EnvOptions>;
  if (!opts.env) throw new Error(`config schema leaf ${path} has no env name`);
  return [
    {
      env: opts.env,
      path,
      description: opts.description ?? '',
      secret: opts.secret === true,
      default: schema.default,
      schema,
    },
  ];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function parseValue(v: EnvVariable, raw: string): unknown {
  const kind = v.schema[Kind];
  if (kind === 'Array') return raw.trim() === '' ? [] : raw.split(',').map((s) => s.trim());
  if (kind === 'Integer' || kind === 'Number') return raw.trim() === '' ? NaN : Number(raw);
  if (kind === 'Boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    return raw;
  }
  return raw;
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
  node[parts[parts.length - 1]!] = value;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

const URLS_WITH_CREDENTIALS = new Set(['LC_SMTP_URLS', 'LC_REDIS_URL', 'LC_POSTGRES_URL']);

/**
 * Variables that were replaced: a deployment still setting one would otherwise lose its
 * channel without a word, so loading refuses it and says what to set instead.
 */
const REPLACED: Record<string, string> = {
  LC_SMS_API_URL: 'LC_SMS_API_URLS (a list in priority order)',
  LC_SMS_ACCOUNT_SID: 'LC_SMS_ACCOUNT_SIDS',
  LC_SMS_AUTH_TOKEN: 'LC_SMS_AUTH_TOKENS',
  LC_SMS_FROM: 'LC_SMS_SENDERS',
  LC_PUSH_API_URL: 'LC_PUSH_API_URLS (a list in priority order)',
  LC_FCM_ACCESS_TOKEN:
    'LC_FCM_SERVICE_ACCOUNT (the service-account key; access tokens are minted from it)',
  LC_APNS_TOKEN:
    'LC_APNS_KEY, LC_APNS_KEY_ID and LC_APNS_TEAM_ID (provider tokens are signed from them)',
};
const DEV_SECRETS = new Set([
  'dev-admin-token',
  'dev-signing-secret-change-me',
  'dev-webhook-secret-change-me',
  'dev-inapp-secret-change-me',
  'demo:dev-write-key',
  'demo:dev-write-key:server',
  'web:dev-browser-key',
  'web:dev-browser-key:client',
]);

/** A development value, or a list holding one (a development write key among real ones). */
const isDevelopmentValue = (value: string) =>
  DEV_SECRETS.has(value) || value.split(',').some((entry) => DEV_SECRETS.has(entry.trim()));

/**
 * Reads every variable of the schema from `env`, applies defaults and `overrides`
 * (dotted paths, for the CLI and tests), validates, and freezes. Throws ConfigError with
 * one line per problem, each naming the variable.
 */
export function loadConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Record<string, unknown> = {},
  options: LoadOptions = {},
): Readonly<Config> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [old, now] of Object.entries(REPLACED))
    if (env[old] !== undefined && env[old] !== '')
      problems.push(`${old} is no longer read: set ${now} instead`);
  for (const v of envVariables()) {
    const raw = env[v.env];
    let value: unknown = raw === undefined ? structuredClone(v.default) : parseValue(v, raw);
    if (v.path in overrides) value = overrides[v.path];
    if (!Value.Check(v.schema, value)) {
      const first = [...Value.Errors(v.schema, value)][0];
      const shown = v.secret ? '<redacted>' : JSON.stringify(raw ?? value);
      problems.push(`${v.env}=${shown}: ${first?.message ?? 'invalid'} (${v.description})`);
      continue;
    }
    setPath(out, v.path, value);
  }
  if (problems.length === 0 && out.env === 'production') {
    for (const v of envVariables().filter((x) => x.secret)) {
      const value = env[v.env];
      if (
        value === undefined ||
        isDevelopmentValue(value) ||
        (Array.isArray(v.default) && value === (v.default as string[]).join(','))
      ) {
        if (typeof v.default === 'string' && v.default === '') continue;
        if (Array.isArray(v.default) && v.default.length === 0) continue;
        // Addresses that may carry a password: redacted like secrets, but their defaults are not secrets to refuse.
        if (URLS_WITH_CREDENTIALS.has(v.env)) continue;
        problems.push(`${v.env}: must be set to a real secret when NODE_ENV=production`);
      }
    }
  }
  if (problems.length === 0) {
    const trust = (out as Config).http.trustProxy;
    try {
      proxyTrust(trust);
    } catch (err) {
      problems.push(`LC_TRUST_PROXY=${JSON.stringify(trust)}: ${(err as Error).message}`);
    }
  }
  if (problems.length === 0) problems.push(...sharedSecretProblems(out as Config));
  if (problems.length === 0) problems.push(...jwtProblems(out as Config));
  if (problems.length === 0 && options.serving)
    problems.push(...servingProblems(env, out as Config));
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(out as Config);
}

export interface LoadOptions {
  /**
   * The configuration of a process that serves traffic (`lifecycle run`, the process
   * entries): the built-in development secrets are refused unless NODE_ENV=development (or
   * test) was set on purpose, and the admin token must be long enough to resist guessing.
   * Tools (`rules validate`, `simulate`) and the embedded demo load without these checks.
   */
  serving?: boolean;
}

/** Secrets given to outside parties must not be secrets that sign something else. */
function sharedSecretProblems(config: Config): string[] {
  const { inappSecret, signingSecret, emailEventsSecret } = config.auth;
  const problems: string[] = [];
  if (inappSecret === signingSecret)
    problems.push(
      'LC_INAPP_SECRET: must differ from LC_SIGNING_SECRET: the product backend holds it, and must not be able to sign tracking, unsubscribe or preference links',
    );
  if (inappSecret === emailEventsSecret)
    problems.push(
      'LC_INAPP_SECRET: must differ from LC_EMAIL_EVENTS_SECRET: the mail provider holds that one, and must not be able to sign in-app tokens',
    );
  return problems;
}

/** A JWKS without a fixed issuer and audience would accept tokens the provider issued for any other app. */
function jwtProblems(config: Config): string[] {
  const { jwtJwksUrl, jwtIssuer, jwtAudience } = config.auth;
  if (jwtJwksUrl === '') return [];
  return [
    ...(jwtIssuer === ''
      ? ['LC_JWT_ISSUER: must be set when LC_JWT_JWKS_URL is (the `iss` of your provider)']
      : []),
    ...(jwtAudience === ''
      ? [
          'LC_JWT_AUDIENCE: must be set when LC_JWT_JWKS_URL is (the `aud` your provider gives this API)',
        ]
      : []),
  ];
}

/** Shortest admin token accepted outside development: 128 bits as hex is 32 characters, base64 about 22. */
export const MIN_ADMIN_TOKEN_LENGTH = 24;

function servingProblems(env: Record<string, string | undefined>, config: Config): string[] {
  const problems: string[] = [];
  const explicitlyDevelopment = env.NODE_ENV === 'development' || env.NODE_ENV === 'test';
  if (!explicitlyDevelopment) {
    // A deployment that forgot NODE_ENV runs as development by default; with the public
    // development secrets anyone could sign links or call the admin API.
    for (const v of envVariables().filter((x) => x.secret && !URLS_WITH_CREDENTIALS.has(x.env))) {
      const value = env[v.env];
      const usesDefault =
        value === undefined
          ? v.default !== '' && !(Array.isArray(v.default) && v.default.length === 0)
          : isDevelopmentValue(value) ||
            (Array.isArray(v.default) && value === (v.default as string[]).join(','));
      if (usesDefault) {
        problems.push(
          `${v.env}: the built-in development value is refused unless NODE_ENV=development is set explicitly; set a real secret (or NODE_ENV=development for a local try)`,
        );
      }
    }
    if (config.auth.adminToken.length < MIN_ADMIN_TOKEN_LENGTH) {
      problems.push(
        `LC_ADMIN_TOKEN: must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters (for example \`openssl rand -hex 24\`)`,
      );
    }
  }
  return [...new Set(problems)];
}

/** Paths of secret values, for the logger's redaction list. */
export function secretPaths(): string[] {
  return envVariables()
    .filter((v) => v.secret)
    .map((v) => v.path);
}

/** Named address ranges LC_TRUST_PROXY accepts (those of proxy-addr, which fastify uses). */
const PROXY_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * Which peers may tell a server the client's address (`X-Forwarded-For`), as fastify's
 * `trustProxy` takes it, from LC_TRUST_PROXY: `false` (the default: nobody, `request.ip` is
 * the socket's peer), `true` (whoever connects: only behind a proxy that overwrites the
 * header), a hop count, or a comma-separated list of addresses, CIDRs and the names
 * `loopback`, `linklocal`, `uniquelocal`. Throws with what is wrong.
 */
export function proxyTrust(setting: string): boolean | number | string[] {
  const s = setting.trim();
  if (s === '' || /^false$/i.test(s)) return false;
  if (/^true$/i.test(s)) return true;
  if (/^\d+$/.test(s)) {
    const hops = Number(s);
    if (!Number.isSafeInteger(hops)) throw new Error(`hop count ${s} is too large`);
    return hops === 0 ? false : hops;
  }
  const entries = s.split(',').map((e) => e.trim());
  for (const entry of entries) {
    if (PROXY_RANGES.has(entry)) continue;
    const [address = '', bits, ...rest] = entry.split('/');
    const family = isIP(address);
    const max = family === 4 ? 32 : 128;
    if (
      family === 0 ||
      rest.length > 0 ||
      (bits !== undefined && (!/^\d+$/.test(bits) || Number(bits) > max))
    )
      throw new Error(
        `"${entry}" is not an address, a CIDR or one of ${[...PROXY_RANGES].join(', ')} (expected false, true, a hop count, or a comma-separated list of those)`,
      );
  }
  return entries;
}
