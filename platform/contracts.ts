// Message contracts between rooms. TypeBox schemas are the single definition: the
// TypeScript types derive from them, HTTP validation uses them, and the Avro wire
// schemas in ./avro.ts are checked against them by a test.
import { Type, type Static } from '@sinclair/typebox';

const Json = Type.Record(Type.String(), Type.Unknown());

/** An event after ingestion, whatever its source (HTTP, CDC, tracker, timer, scheduler). */
export const NormalisedEventSchema = Type.Object({
  /** Stable id: Segment messageId, CDC (source, lsn, table, pk), or derived for internal events. */
  id: Type.String({ minLength: 1 }),
  userId: Type.String({ minLength: 1 }),
  anonymousId: Type.Optional(Type.String()),
  /** Event name as sent (`Feature Used`), or `identify`, `page`, `screen`, `group`, `alias`, `timer.fired`, ... */
  type: Type.String({ minLength: 1 }),
  /** Event time, epoch milliseconds (skew-corrected for HTTP). */
  ts: Type.Integer(),
  receivedAt: Type.Integer(),
  /** `http:<source>:<client|server>` (the write key's source and kind), `cdc:<connector>`, `tracker`, `engine`, `scheduler`, `simulate`. */
  source: Type.String(),
  properties: Json,
  traits: Type.Optional(Json),
  context: Type.Optional(Json),
});
export type NormalisedEvent = Static<typeof NormalisedEventSchema>;

/**
 * What a write key may vouch for. `client`: a browser or mobile app, whose key anyone can read
 * from the app; it may not set contact or routing traits. `server`: a backend, trusted with them.
 */
export type WriteKeyKind = 'client' | 'server';
export const WRITE_KEY_KINDS: readonly WriteKeyKind[] = ['client', 'server'];

/** The `source` of an event accepted over HTTP: set by ingestion from the write key, never from the body. */
export function httpSource(source: string, kind: WriteKeyKind): string {
  return `http:${source}:${kind}`;
}

/**
 * The kind of write key an HTTP event came with, or null for events not from HTTP. An
 * `http:<source>` without a kind (written before keys had kinds) counts as `client`.
 */
export function writeKeyKindOf(source: string): WriteKeyKind | null {
  const parts = source.split(':');
  if (parts[0] !== 'http') return null;
  return parts.length === 3 && parts[2] === 'server' ? 'server' : 'client';
}

/**
 * Who makes an event, from its `source`: `http` (a write key, `http:<source>:<kind>`), `cdc` (the
 * product database, `cdc:<connector>`), or one of the product's own processes.
 */
export type EventOrigin =
  'http' | 'cdc' | 'engine' | 'scheduler' | 'tracker' | 'inapp' | 'simulate' | 'unknown';

export function eventOrigin(source: string): EventOrigin {
  const head = source.split(':', 1)[0]!;
  switch (head) {
    case 'http':
    case 'cdc':
    case 'engine':
    case 'scheduler':
    case 'tracker':
    case 'inapp':
    case 'simulate':
      return head;
    default:
      return 'unknown';
  }
}

/**
 * Event types only the product makes, and who may make each: the closed list of reserved
 * types. Ingest refuses them from apps (a browser write key could otherwise erase a user,
 * fire a delayed rule at once with forged ids, or poison uplift with fake opens), and the
 * engine, delivery and the sink act on them only from these origins.
 */
export const RESERVED_EVENT_TYPES: Readonly<Record<string, readonly EventOrigin[]>> = Object.freeze(
  {
    /** Right to be forgotten: a deleted row of the product database (the CDC mapping). */
    user_deleted: ['cdc'],
    'timer.fired': ['engine'],
    'segment.entered': ['engine'],
    'segment.exited': ['engine'],
    'schedule.occurrence': ['scheduler'],
    /** One audience member of a campaign run (engine/core/campaign.ts): a forged one would send a campaign to anyone. */
    'campaign.member': ['scheduler'],
    message_opened: ['tracker'],
    message_clicked: ['tracker'],
    message_unsubscribed: ['tracker'],
    message_bounced: ['tracker'],
    message_complained: ['tracker'],
    message_delivered: ['tracker'],
    'inapp.read': ['inapp'],
  },
);

export function isReservedEventType(type: string): boolean {
  return Object.hasOwn(RESERVED_EVENT_TYPES, type);
}

/**
 * Why an event of a reserved type may not be acted on, or null when its type is not
 * reserved or its origin makes that type. `simulate` stands for authored test input and
 * may play any origin.
 */
export function reservedTypeRefusal(
  event: Pick<NormalisedEvent, 'type' | 'source'>,
): string | null {
  if (!Object.hasOwn(RESERVED_EVENT_TYPES, event.type)) return null;
  const allowed = RESERVED_EVENT_TYPES[event.type]!;
  const origin = eventOrigin(event.source);
  if (origin === 'simulate' || allowed.includes(origin)) return null;
  return `reserved event type ${JSON.stringify(event.type)} from source ${JSON.stringify(event.source)}: only ${allowed.join(', ')} may send it`;
}

export const Channel = Type.Union([
  Type.Literal('email'),
  Type.Literal('inapp'),
  Type.Literal('webhook'),
  Type.Literal('sms'),
  Type.Literal('push'),
]);
export type Channel = Static<typeof Channel>;
export const CHANNELS: readonly Channel[] = ['email', 'inapp', 'webhook', 'sms', 'push'];

/** What the engine asks delivery to do. `sendId` is deterministic: (ruleId, userId, trigger id). */
export const SendCommandSchema = Type.Object({
  sendId: Type.String({ minLength: 1 }),
  ruleId: Type.String({ minLength: 1 }),
  userId: Type.String({ minLength: 1 }),
  category: Type.String({ minLength: 1 }),
  priority: Type.Integer(),
  template: Type.String({ minLength: 1 }),
  channels: Type.Array(Channel, { minItems: 1 }),
  variant: Type.Union([Type.String(), Type.Null()]),
  holdout: Type.Boolean(),
  triggeredBy: Type.Object({ eventId: Type.String(), eventType: Type.String() }),
  /** Epoch ms: event time, or timer fire time for delayed triggers. */
  createdAt: Type.Integer(),
  /** Epoch ms after which the send is stale and dropped (null: never). */
  expiresAt: Type.Union([Type.Integer(), Type.Null()]),
  /** Personalisation data: user traits snapshot plus event properties. */
  data: Json,
  campaignId: Type.Optional(Type.String()),
  goal: Type.Optional(Type.Object({ event: Type.String(), withinMs: Type.Integer() })),
  /**
   * The template version this send renders (a resend, a test send of a draft). Absent: the
   * version published for the channel and locale when delivery renders it.
   */
  templateVersion: Type.Optional(Type.Integer({ minimum: 1 })),
  /**
   * Who asked for a send made outside the rules: `api:<keyId>` (the send API), `resend:<sendId>`
   * (support resent that message), `test:<keyId>` (a marketer's test send). Absent for rule and
   * campaign sends.
   */
  origin: Type.Optional(Type.String()),
  /**
   * The message type (platform/message-types.ts: product_news, tips, billing...) whose per-user
   * switches delivery honours. Absent: the category alone decides (sends made before types).
   */
  messageType: Type.Optional(Type.String({ minLength: 1 })),
});
export type SendCommand = Static<typeof SendCommandSchema>;

export const DeliveryStatus = Type.Union(
  [
    'queued',
    'sent',
    'delivered',
    'deferred',
    'suppressed',
    'holdout',
    'failed',
    'bounced',
    'complained',
    'opened',
    'clicked',
    'unsubscribed',
    'read',
  ].map((s) => Type.Literal(s)),
);
export type DeliveryStatus =
  | 'queued'
  | 'sent'
  | 'delivered'
  | 'deferred'
  | 'suppressed'
  | 'holdout'
  | 'failed'
  | 'bounced'
  | 'complained'
  | 'opened'
  | 'clicked'
  | 'unsubscribed'
  | 'read';

export const DeliveryOutcomeSchema = Type.Object({
  /** Stable id of this outcome: sendId + status (+ attempt) so the sink dedupes replays. */
  id: Type.String(),
  sendId: Type.String(),
  ruleId: Type.String(),
  userId: Type.String(),
  channel: Type.Union([Channel, Type.Null()]),
  status: DeliveryStatus,
  reason: Type.Union([Type.String(), Type.Null()]),
  provider: Type.Union([Type.String(), Type.Null()]),
  attempt: Type.Integer(),
  ts: Type.Integer(),
  variant: Type.Union([Type.String(), Type.Null()]),
  holdout: Type.Boolean(),
});
export type DeliveryOutcome = Static<typeof DeliveryOutcomeSchema>;

/**
 * The message log's record of one rendered send on one channel (topic `messages`): what the
 * recipient got, for support and audit. Published by delivery when the provider accepted it;
 * the sink keeps the content for the configured days, then only the metadata.
 */
export const MessageRecordSchema = Type.Object({
  /** `sendId:channel`: replays collapse. */
  id: Type.String(),
  sendId: Type.String(),
  userId: Type.String(),
  ruleId: Type.String(),
  campaignId: Type.Union([Type.String(), Type.Null()]),
  category: Type.String(),
  channel: Channel,
  template: Type.String(),
  /** The template version rendered (null: a template with no versions, e.g. files only). */
  templateVersion: Type.Union([Type.Integer(), Type.Null()]),
  locale: Type.String(),
  /** The address it went to: email, phone, device token, webhook URL; the userId for in-app. */
  to: Type.Union([Type.String(), Type.Null()]),
  subject: Type.Union([Type.String(), Type.Null()]),
  html: Type.Union([Type.String(), Type.Null()]),
  text: Type.Union([Type.String(), Type.Null()]),
  /** The rest of the rendered content (push/in-app title, body, url; webhook payload). */
  content: Json,
  /** The send's personalisation data, so a resend renders the same message. */
  data: Json,
  origin: Type.Union([Type.String(), Type.Null()]),
  ts: Type.Integer(),
});
export type MessageRecord = Static<typeof MessageRecordSchema>;

/** Internal topic names, derived from one configurable prefix. */
export function topics(prefix: string) {
  return {
    events: `${prefix}.events`,
    sends: `${prefix}.sends`,
    /** Sends of priority `high` (the send API): delivery reads them apart, never behind the rules' backlog. */
    sendsHigh: `${prefix}.sends.high`,
    deliveries: `${prefix}.deliveries`,
    dlq: `${prefix}.dlq`,
    campaigns: `${prefix}.campaigns`,
    /** Managed templates: every version and every publish, compacted per key (delivery/templates). */
    templates: `${prefix}.templates`,
    /** The message log: rendered content of each send (MessageRecord). */
    messages: `${prefix}.messages`,
  } as const;
}
export type Topics = ReturnType<typeof topics>;

/** Headers every DLQ record carries. */
export const DlqHeaders = {
  reason: 'lc-dlq-reason',
  sourceTopic: 'lc-dlq-source-topic',
  sourcePartition: 'lc-dlq-source-partition',
  sourceOffset: 'lc-dlq-source-offset',
  stage: 'lc-dlq-stage',
} as const;

/** Header naming the Avro schema a value was written with. */
export const SCHEMA_ID_HEADER = 'lc-schema-id';
